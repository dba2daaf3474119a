// Command portcullis runs the Portcullis identity-aware reverse proxy.
//
//	portcullis dev                   run a self-contained demo
//	portcullis serve --config FILE   run the proxy
//	portcullis check --config FILE   validate a configuration file and exit
//	portcullis admin GROUP COMMAND   manage organisations, memberships and the audit stream
//	portcullis version               print version information
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

const usage = `Usage: portcullis <command> [flags]

Commands:
  dev                   run a self-contained demo on https://127.0.0.1:8443
  serve --config FILE   run the proxy
  check --config FILE   validate a configuration file; exit 1 with every error if invalid
  admin GROUP COMMAND   manage organisations, domains, memberships and the audit stream
                        ("portcullis admin help" lists the commands)
  demo-portal           serve only the demo legacy portal (for docker/compose.yaml)
  version               print version information

Run "portcullis <command> -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code, so tests can call it.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "dev":
		return cmdDev(args[1:], stdout, stderr)
	case "demo-portal":
		return cmdDemoPortal(args[1:], stdout, stderr)
	case "serve":
		return cmdServe(args[1:], stdout, stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "admin":
		return cmdAdmin(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		return cmdVersion(stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "portcullis: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
