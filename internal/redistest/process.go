package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/freeport"
	"github.com/redis/go-redis/v9"
)

// process is one redis-server child process and what is needed to start it again on the same
// port. It knows nothing about testing.TB so the shared server, which outlives any one test, can
// use it too.
type process struct {
	bin, dir string
	socket   string // unix socket path, "" for none
	opts     options
	port     int
	log      *logBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	err  error         // cmd.Wait's result, valid after done is closed
}

// errBind reports that redis-server could not bind its port, the one failure worth retrying
// with another port.
var errBind = errors.New("port already in use")

// launch starts redis-server on a free loopback port. Redis cannot be told to pick a port itself
// (port 0 means "no TCP listener"), so launch takes a free port from freeport, outside the
// range the kernel gives outgoing connections, and hands it to redis-server; when something
// else grabs the port in between, it tries another.
func launch(bin, dir, socketDir string, o options) (*process, error) {
	p := &process{bin: bin, dir: dir, opts: o, log: &logBuffer{}}
	if socketDir != "" {
		p.socket = filepath.Join(socketDir, "redis.sock")
	}
	var err error
	for range 20 {
		p.port, err = freeport.Get()
		if err != nil {
			return nil, err
		}
		err = p.start(10 * time.Second)
		if !errors.Is(err, errBind) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (p *process) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

func (p *process) args() []string {
	if p.opts.sentinelConf != "" {
		// A sentinel's configuration file comes first; it rewrites it as it learns the set-up.
		return []string{p.opts.sentinelConf, "--sentinel",
			"--port", strconv.Itoa(p.port), "--bind", "127.0.0.1",
			"--dir", p.dir, "--daemonize", "no", "--logfile", ""}
	}
	a := []string{
		"--port", strconv.Itoa(p.port),
		"--bind", "127.0.0.1",
		// Nothing is written to disk: tests want a fresh, fast server.
		"--save", "",
		"--appendonly", "no",
		"--dir", p.dir,
		"--daemonize", "no",
		"--logfile", "", // log to stdout, which we capture
	}
	if p.socket != "" {
		a = append(a, "--unixsocket", p.socket, "--unixsocketperm", "700")
	}
	if p.opts.password != "" {
		a = append(a, "--requirepass", p.opts.password)
	}
	if p.opts.databases > 0 {
		a = append(a, "--databases", strconv.Itoa(p.opts.databases))
	}
	return append(a, p.opts.extra...)
}

// start runs redis-server on p.port and waits until it answers. It returns errBind when the
// port was taken.
func (p *process) start(timeout time.Duration) error {
	p.log.WriteString(fmt.Sprintf("--- redistest: starting %s %s\n", p.bin, strings.Join(p.args(), " ")))
	cmd := exec.Command(p.bin, p.args()...)
	cmd.Dir = p.dir
	cmd.Stdout = p.log
	cmd.Stderr = p.log
	if err := startCmd(cmd); err != nil {
		return fmt.Errorf("start %s: %w", p.bin, err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()

	want := strconv.Itoa(cmd.Process.Pid)
	opt := &redis.Options{
		Addr: p.addr(), Password: p.opts.password,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: time.Second, MaxRetries: -1,
		ContextTimeoutEnabled: true,
	}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-done:
			p.mu.Lock()
			err := p.err
			p.mu.Unlock()
			if strings.Contains(p.log.String(), "Address already in use") {
				return fmt.Errorf("redis-server on %s: %w", p.addr(), errBind)
			}
			return fmt.Errorf("redis-server on %s exited during start-up (%v); log:\n%s", p.addr(), err, p.log.String())
		default:
		}
		// Only a reply from our own process counts: if another server holds the port we
		// picked, ours will fail to bind and exit, and this must not mistake the other for it.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		pid, err := ping(ctx, opt)
		cancel()
		if err == nil && pid == want {
			return nil
		}
		if time.Now().After(deadline) {
			p.kill()
			return fmt.Errorf("redis-server on %s did not answer within %v (last error: %v); log:\n%s", p.addr(), timeout, err, p.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// restart starts the server again on the same port. The old process has just released it, but a
// parallel test may have picked the port meanwhile, so binding is retried until timeout.
func (p *process) restart(timeout time.Duration) error {
	p.kill()
	deadline := time.Now().Add(timeout)
	for {
		err := p.start(timeout)
		if !errors.Is(err, errBind) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill stops the process (SIGKILL works on a SIGSTOPped process too) and waits for it to exit.
func (p *process) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Kill()
	<-done
}

// running reports whether the process has been started and has not exited.
func (p *process) running() bool {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

func (p *process) signal(sig signal) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return errors.New("redis-server is not running")
	}
	select {
	case <-done:
		return errors.New("redis-server is not running")
	default:
	}
	return cmd.Process.Signal(sig)
}

// logBuffer collects the server's output for the test log. It is capped so a chatty server cannot
// exhaust memory; the start of the log, which says why a server failed, is kept.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

const maxLog = 1 << 20

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := maxLog - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *logBuffer) WriteString(s string) { b.Write([]byte(s)) }

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
