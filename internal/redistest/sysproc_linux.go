package redistest

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// startCmd starts cmd so that the kernel kills redis-server if the test binary dies without
// running its cleanups (a panic in another goroutine, a -timeout, kill -9): no orphan servers
// pile up on developer machines or CI runners.
//
// Pdeathsig fires when the *thread* that forked the child exits, not the process, and the Go
// runtime may retire a thread whose goroutine locked it. So every child is forked from one
// goroutine locked to its own thread that never exits.
func startCmd(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	spawnerOnce.Do(func() {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for req := range spawnReqs {
				req.done <- req.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawnReqs <- spawnReq{cmd, done}
	return <-done
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan<- error
}

var (
	spawnerOnce sync.Once
	spawnReqs   = make(chan spawnReq)
)
