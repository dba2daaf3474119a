package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestServerDiesWithTestBinary kills a test binary that has a server running (no cleanups run)
// and checks that the server goes too, so aborted test runs leave no redis-server behind.
func TestServerDiesWithTestBinary(t *testing.T) {
	if os.Getenv("REDISTEST_ORPHAN_CHILD") == "1" {
		s := Start(t)
		fmt.Printf("ADDR %s\n", s.Addr)
		select {} // wait to be killed
	}
	if _, err := findBinary(); err != nil {
		t.Skip("needs a real redis-server:", err)
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestServerDiesWithTestBinary$", "-test.timeout=1m")
	cmd.Env = append(os.Environ(), "REDISTEST_ORPHAN_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	addr := ""
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		t.Fatalf("child printed no address (%v)", sc.Err())
	}
	cmd.Process.Kill()
	cmd.Wait()

	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return // gone
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s outlived its test binary", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
