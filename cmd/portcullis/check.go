package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/portcullis-proxy/portcullis/config"
)

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "portcullis.yaml", "configuration file to check")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, warnings, err := config.Load(*path)
	for _, w := range warnings {
		fmt.Fprintf(stderr, "%s (warning)\n", w.Error())
	}
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: valid: %d routes, tls mode %s, listen %s, %d warnings\n",
		*path, len(cfg.Routes), cfg.TLS.Mode, cfg.Server.Listen, len(warnings))
	return 0
}

// printConfigError prints every problem of a configuration on its own line.
func printConfigError(w io.Writer, err error) {
	for _, line := range configErrorLines(err) {
		fmt.Fprintln(w, line)
	}
}

// configErrorLines splits a Load error into one FILE:LINE:COL: key: message line per problem.
func configErrorLines(err error) []string {
	var errs config.Errors
	if !errors.As(err, &errs) {
		return []string{err.Error()}
	}
	lines := make([]string, len(errs))
	for i, e := range errs {
		lines[i] = e.Error()
	}
	return lines
}
