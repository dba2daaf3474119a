package main

// Memory per idle keep-alive connection (-idle N).

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// idleTargets are the targets whose memory per idle connection -idle measures: the bare TLS
// proxy and portcullis's TLS process with a signed-in person's requests. One per process: a
// Go process keeps the memory it once used, so a second measurement would find it reused.
var idleTargets = []string{"bare tls", "authz warm tls"}

// measureIdle opens n TLS keep-alive connections to each idle target in turn, sends one
// request on each, leaves them idle for a moment and prints how much the process's resident
// memory grew per connection; then it closes them.
func measureIdle(targets []target, cookie string, n int) error {
	fmt.Printf("\nMemory per idle keep-alive TLS connection (%d connections, one request each, then idle 2 s; growth of the process's VmRSS):\n\n", n)
	fmt.Printf("| %-16s | %12s | %12s | %10s |\n", "target", "RSS before", "RSS after", "per conn")
	fmt.Printf("|%s|%s|%s|%s|\n", strings.Repeat("-", 18), strings.Repeat("-", 14), strings.Repeat("-", 14), strings.Repeat("-", 12))
	for _, name := range idleTargets {
		var tg *target
		for i := range targets {
			if targets[i].name == name {
				tg = &targets[i]
			}
		}
		if tg == nil {
			continue
		}
		before, err := rss(tg.pid)
		if err != nil {
			return err
		}
		conns, err := openIdle(tg, tg.headers(cookie, ""), n)
		if err == nil {
			time.Sleep(2 * time.Second)
		}
		after, rerr := rss(tg.pid)
		for _, c := range conns {
			c.Close()
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if rerr != nil {
			return rerr
		}
		fmt.Printf("| %-16s | %9d KB | %9d KB | %7.1f KB |\n", name, before, after, float64(after-before)/float64(n))
		time.Sleep(time.Second) // let the server close its side
	}
	return nil
}

// openIdle opens n connections to tg and completes one request on each.
func openIdle(tg *target, hdr http.Header, n int) ([]net.Conn, error) {
	host := strings.TrimPrefix(tg.base, "https://")
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\n", tg.path, host)
	for k, vs := range hdr {
		for _, v := range vs {
			fmt.Fprintf(&req, "%s: %s\r\n", k, v)
		}
	}
	req.WriteString("\r\n")
	conns := make([]net.Conn, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 64 {
		wg.Go(func() {
			for i := range next {
				c, err := tls.Dial("tcp", host, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
				if err != nil {
					errs <- err
					continue
				}
				conns[i] = c
				if _, err := io.WriteString(c, req.String()); err != nil {
					errs <- err
					continue
				}
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					errs <- err
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.Close {
					errs <- fmt.Errorf("status %d, close %v", resp.StatusCode, resp.Close)
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	var open []net.Conn
	for _, c := range conns {
		if c != nil {
			open = append(open, c)
		}
	}
	if err := <-errs; err != nil {
		return open, err
	}
	return open, nil
}

// rss is the process's resident memory in KB (/proc/<pid>/status VmRSS).
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}
