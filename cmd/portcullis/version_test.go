package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

// TestVersionText: a build from a git checkout names its commit, not "dev".
func TestVersionText(t *testing.T) {
	vcs := func(mod string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "10d1530f8f25570e7ed8d38c6becc24915d36a00"},
			{Key: "vcs.time", Value: "2026-12-07T01:14:55Z"}, {Key: "vcs.modified", Value: mod}}
	}
	for _, c := range []struct {
		name, linked string
		bi           *debug.BuildInfo
		want         []string
	}{
		{"linked version wins", "v1.2.3", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261207011455-10d1530f8f25"}, Settings: vcs("false")},
			[]string{"portcullis v1.2.3\n", "revision: 10d1530f8f25570e7ed8d38c6becc24915d36a00 (2026-12-07T01:14:55Z)\n"}},
		{"checkout: the pseudo-version", "dev", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261207011455-10d1530f8f25+dirty"}, Settings: vcs("true")},
			[]string{"portcullis v0.0.0-20261207011455-10d1530f8f25+dirty\n", "with uncommitted changes"}},
		{"tagged release", "dev", &debug.BuildInfo{Main: debug.Module{Version: "v0.4.0"}, Settings: vcs("false")},
			[]string{"portcullis v0.4.0\n"}},
		{"devel with a commit", "dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("true")},
			[]string{"portcullis dev-10d1530f8f25-dirty\n"}},
		{"nothing stamped", "dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			[]string{"portcullis dev\n", "built without VCS information"}},
		{"no build information", "dev", nil, []string{"portcullis dev\n"}},
	} {
		got := versionText(c.linked, c.bi)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", c.name, got, w)
			}
		}
	}
}
