package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

func cmdVersion(stdout io.Writer) int {
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprint(stdout, versionText(version, bi))
	fmt.Fprintf(stdout, "go: %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return 0
}

// versionText says which build this is: the version set at link time (-X main.version, as
// the Docker image does), else the module's version from the build information (a tagged
// release, or for a build from a git checkout the pseudo-version Go derives from the commit,
// "+dirty" when the tree had changes), else "dev" with the commit if one was stamped; then the
// VCS revision, its time and whether the tree was modified. A binary built without VCS
// stamping (go run, -buildvcs=false) says so.
func versionText(linked string, bi *debug.BuildInfo) string {
	var rev, at, modified string
	mainVersion := ""
	if bi != nil {
		mainVersion = bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
	}
	v := linked
	switch {
	case v != "" && v != "dev":
	case mainVersion != "" && mainVersion != "(devel)":
		v = mainVersion
	case rev != "":
		v = "dev-" + rev[:min(12, len(rev))]
		if modified == "true" {
			v += "-dirty"
		}
	default:
		v = "dev"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "portcullis %s\n", v)
	if rev != "" {
		fmt.Fprintf(&b, "revision: %s", rev)
		if at != "" {
			fmt.Fprintf(&b, " (%s)", at)
		}
		if modified == "true" {
			b.WriteString(", with uncommitted changes")
		}
		b.WriteString("\n")
	} else {
		b.WriteString("revision: unknown (built without VCS information: go run, or -buildvcs=false)\n")
	}
	return b.String()
}
