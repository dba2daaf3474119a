//go:build !linux

package redistest

import "os/exec"

// startCmd starts cmd. Outside Linux there is no parent-death signal, so a test binary killed
// without running its cleanups leaves its redis-server running.
func startCmd(cmd *exec.Cmd) error { return cmd.Start() }
