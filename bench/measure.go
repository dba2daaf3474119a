package main

// The load generator and what it measures: requests, latencies, the proxy's CPU time and
// Redis's counters.

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// checkTargets makes sure every target answers 200 before anything is measured.
func checkTargets(targets []target, cookie, apiKey string) error {
	for _, tg := range targets {
		c := newClient(1)
		req, _ := http.NewRequest("GET", tg.base+tg.path, nil)
		req.Header = tg.headers(cookie, apiKey)
		resp, err := c.Do(req)
		if err != nil {
			return fmt.Errorf("%s: %w", tg.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := 1024 // the upstream's answer
		if tg.question != nil {
			want = 0 // an allowed question's answer is its headers
		}
		if resp.StatusCode != 200 || len(b) != want {
			return fmt.Errorf("%s: %d %s", tg.name, resp.StatusCode, b)
		}
	}
	return nil
}

// measureRounds measures every target (those -only selects, and the bare ones) once per round,
// per long each, with cookie on the authenticated ones; -perf profiles one in the last round.
// It returns each target's results over all rounds and, under byRound, each round's summary.
func measureRounds(targets []target, cookie string, b *bed, per time.Duration) (map[string]*result, map[string][]*result, map[string][]*result, error) {
	results := map[string]*result{}
	byRound := map[string][]*result{} // each round's result, for the per-round ratios
	// paired: for a target compared with a bare proxy, the bare proxy's result in the slices
	// interleaved with the target's in the same cell.
	paired := map[string][]*result{}
	byName := map[string]target{}
	for _, tg := range targets {
		byName[tg.name] = tg
	}
	log.Printf("%d rounds × %d targets × %v, %d connections", *rounds, len(targets), per, *conns)
	for r := range *rounds {
		for _, tg := range targets {
			if *only != "" && !strings.Contains(tg.name, *only) && !strings.HasPrefix(tg.name, "bare") {
				continue
			}
			hdr := tg.headers(cookie, b.apiKey)
			var prof *exec.Cmd
			if *perfOf == tg.name && r == *rounds-1 {
				prof = exec.Command("perf", "record", "-F", "499", "-g", "-p", strconv.Itoa(tg.pid), "-o", filepath.Join(b.dir, "perf.data"),
					"--", "sleep", strconv.FormatFloat((per+*warmup).Seconds(), 'f', 1, 64))
				prof.Stdout, prof.Stderr = b.logs, b.logs
				if err := prof.Start(); err != nil {
					return nil, nil, nil, fmt.Errorf("perf: %w", err)
				}
			}
			var gprof chan error
			profiled := *pprofOf == tg.name && r == *rounds-1 && tg.metrics != ""
			bareProfile := ""
			if profiled {
				gprof = make(chan error, 2)
				span := per
				if tg.bareRef != "" {
					span += *warmup // a paired cell warms both up
				}
				go func() { gprof <- fetchProfile(tg.metrics, span, filepath.Join(b.dir, "cpu.pprof")) }()
				if ref := byName[tg.bareRef]; ref.metrics != "" {
					// The bare proxy's profile over the same cell (its slices interleave with the
					// target's): the difference is what the target adds.
					bareProfile = filepath.Join(b.dir, "bare.pprof")
					go func() { gprof <- fetchProfile(ref.metrics, span, bareProfile) }()
				} else {
					gprof <- nil
				}
			}
			tm := &meter{url: tg.base + tg.path, hdr: hdr, pid: tg.pid, redisAddr: b.redisAddr}
			var res, ref *result
			var err error
			if tg.bareRef == "" {
				res, err = tm.measure(per)
			} else {
				bare := byName[tg.bareRef]
				bm := &meter{url: bare.base + bare.path, hdr: bare.headers(cookie, b.apiKey), pid: bare.pid, redisAddr: b.redisAddr}
				res, ref, err = measurePaired(tm, bm, per)
			}
			if gprof != nil {
				if err := errors.Join(<-gprof, <-gprof); err != nil {
					return nil, nil, nil, fmt.Errorf("pprof %s: %w", tg.name, err)
				}
				out, _ := exec.Command("go", "tool", "pprof", "-top", "-nodecount", "45", filepath.Join(b.dir, "cpu.pprof")).CombinedOutput()
				fmt.Printf("Go CPU profile of %s (flat: in the function itself; cum: with its callees):\n%s", tg.name, out)
				out, _ = exec.Command("go", "tool", "pprof", "-top", "-cum", "-focus", "portcullis", "-nodecount", "45", filepath.Join(b.dir, "cpu.pprof")).CombinedOutput()
				fmt.Printf("the same, portcullis's own functions and what they call, by cum:\n%s", out)
				if bareProfile != "" {
					out, _ = exec.Command("go", "tool", "pprof", "-top", "-nodecount", "45", "-diff_base", bareProfile, filepath.Join(b.dir, "cpu.pprof")).CombinedOutput()
					fmt.Printf("what it costs beyond %s (the same cell's profiles of both, the bare one subtracted; both served about as many requests):\n%s", tg.bareRef, out)
				}
			}
			if prof != nil {
				_ = prof.Wait()
				out, _ := exec.Command("perf", "report", "-i", filepath.Join(b.dir, "perf.data"), "--stdio", "--children",
					"--percent-limit", "2", "-g", "none", "--sort", "symbol").CombinedOutput()
				fmt.Printf("perf profile of %s (time in each function and its callees):\n", tg.name)
				for line := range strings.Lines(string(out)) {
					if strings.Contains(line, "portcullis") || strings.Contains(line, "net/http") || strings.Contains(line, "runtime.gcBgMarkWorker") ||
						strings.Contains(line, "crypto") || strings.Contains(line, "syscall") || strings.Contains(line, "encoding/json") {
						fmt.Print(strings.Join(strings.Fields(line)[:4], " "), "\n")
					}
				}
			}
			if err == nil && res.errors > res.n/100 {
				// A failing target (a session or elevation that ended) must not enter the table
				// as a cheap, fast one.
				err = fmt.Errorf("%d of %d requests failed", res.errors, res.errors+res.n)
			}
			if err != nil {
				return nil, nil, nil, fmt.Errorf("round %d %s: %w", r+1, tg.name, err)
			}
			vs := ""
			if ref != nil {
				vs = fmt.Sprintf("  (%s beside it: %.0f req/s, %.1f µs)", tg.bareRef, ref.rps(), ref.cpuPerReq())
				paired[tg.name] = append(paired[tg.name], ref.summary())
			}
			log.Printf("round %d %-28s %8.0f req/s  %6.1f µs CPU/req  %.2f redis round trips/req  %.2f cmds/req  errors %d%s",
				r+1, tg.name, res.rps(), res.cpuPerReq(), res.tripsPerReq(), res.redisPerReq(), res.errors, vs)
			byRound[tg.name] = append(byRound[tg.name], res.summary())
			if prev := results[tg.name]; prev != nil {
				prev.add(res)
			} else {
				results[tg.name] = res
			}
		}
	}

	return results, byRound, paired, nil
}

// sliceLen is how long one slice of a paired measurement lasts: short enough that the
// machine's speed, which drifts over tens of seconds on a shared VM, is the same for the target
// and its reference, long enough that the slices' edges (a connection idle for a moment) do
// not count.
const sliceLen = time.Second

// measurePaired measures t and its reference ref in alternating slices of the cell of length
// d (half of it each, in the order ref t t ref ref t …, so neither is always first), and
// returns both results: the ratio of two results measured seconds apart on a small VM moves by
// more than what is measured.
func measurePaired(t, ref *meter, d time.Duration) (*result, *result, error) {
	t.open()
	ref.open()
	defer t.close()
	defer ref.close()
	if _, err := t.run(*warmup, false); err != nil {
		return nil, nil, err
	}
	if _, err := ref.run(*warmup, false); err != nil {
		return nil, nil, err
	}
	n := max(int(d/(2*sliceLen)), 1)
	slice := d / time.Duration(2*n)
	var tr, rr *result
	for i := range 2 * n {
		m, acc := t, &tr
		if i%4 == 0 || i%4 == 3 {
			m, acc = ref, &rr
		}
		res, err := m.run(slice, true)
		if err != nil {
			return nil, nil, err
		}
		if *acc == nil {
			*acc = res
		} else {
			(*acc).add(res)
		}
	}
	return tr, rr, nil
}

// meter measures one URL with *conns keep-alive clients: the proxy's CPU time and system
// calls, and Redis's commands, around each run.
type meter struct {
	url       string
	hdr       http.Header
	pid       int
	redisAddr string
	c         *http.Client
}

func (m *meter) open() { m.c = newClient(*conns) }

func (m *meter) close() { m.c.CloseIdleConnections() }

// measure warms the connections up and measures one run of d.
func (m *meter) measure(d time.Duration) (*result, error) {
	m.open()
	defer m.close()
	if _, err := m.run(*warmup, false); err != nil {
		return nil, err
	}
	return m.run(d, true)
}

// run loads the URL for d, bounded by *maxReq requests, and returns what it measured (with
// the latencies when record).
func (m *meter) run(d time.Duration, record bool) (*result, error) {
	loop := func(until time.Time, count *atomic.Int64, lat [][]time.Duration) int64 {
		var errs atomic.Int64
		var wg sync.WaitGroup
		for w := range *conns {
			wg.Go(func() {
				req, _ := http.NewRequest("GET", m.url, nil)
				req.Header = m.hdr
				for time.Now().Before(until) && count.Add(1) <= int64(*maxReq) {
					t0 := time.Now()
					resp, err := m.c.Do(req)
					if err != nil {
						errs.Add(1)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						errs.Add(1)
						continue
					}
					if lat != nil {
						lat[w] = append(lat[w], time.Since(t0))
					}
				}
			})
		}
		wg.Wait()
		return errs.Load()
	}
	if !record {
		var n atomic.Int64
		loop(time.Now().Add(d), &n, nil)
		return nil, nil
	}
	lat := make([][]time.Duration, *conns)
	for i := range lat {
		lat[i] = make([]time.Duration, 0, 4096)
	}
	cmd0, reads0, err := redisStats(m.redisAddr)
	if err != nil {
		return nil, err
	}
	cpu0, err := cpu(m.pid)
	if err != nil {
		return nil, err
	}
	sys0, err := syscalls(m.pid)
	if err != nil {
		return nil, err
	}
	var count atomic.Int64
	t0 := time.Now()
	errs := loop(t0.Add(d), &count, lat)
	elapsed := time.Since(t0)
	cpu1, err := cpu(m.pid)
	if err != nil {
		return nil, err
	}
	sys1, err := syscalls(m.pid)
	if err != nil {
		return nil, err
	}
	cmd1, reads1, err := redisStats(m.redisAddr)
	if err != nil {
		return nil, err
	}
	// -1: our own INFO (the first connection's close may count one more read; noise).
	res := &result{errors: errs, elapsed: elapsed, cpu: cpu1 - cpu0, syscalls: sys1 - sys0, redisCmds: cmd1 - cmd0 - 1, redisReads: reads1 - reads0 - 1}
	for _, l := range lat {
		res.latencies = append(res.latencies, l...)
	}
	res.n = int64(len(res.latencies))
	return res, nil
}

func newClient(n int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}},
		MaxIdleConns:        n,
		MaxIdleConnsPerHost: n,
		MaxConnsPerHost:     n,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}, Timeout: 10 * time.Second}
}

// summary is a copy of r without its latencies, kept per round.
func (r *result) summary() *result {
	c := *r
	c.latencies = nil
	return &c
}

type result struct {
	n, errors  int64
	elapsed    time.Duration
	cpu        time.Duration
	syscalls   int64 // read and write system calls of the proxy process
	redisCmds  int64
	redisReads int64
	latencies  []time.Duration
	sortedOnce bool
}

func (r *result) rps() float64 { return float64(r.n) / r.elapsed.Seconds() }
func (r *result) cpuPerReq() float64 {
	return float64(r.cpu) / float64(time.Microsecond) / float64(max(r.n, 1))
}
func (r *result) syscallsPerReq() float64 { return float64(r.syscalls) / float64(max(r.n, 1)) }
func (r *result) redisPerReq() float64    { return float64(r.redisCmds) / float64(max(r.n, 1)) }
func (r *result) tripsPerReq() float64    { return float64(r.redisReads) / float64(max(r.n, 1)) }
func (r *result) add(o *result) {
	r.n += o.n
	r.errors += o.errors
	r.elapsed += o.elapsed
	r.cpu += o.cpu
	r.syscalls += o.syscalls
	r.redisCmds += o.redisCmds
	r.redisReads += o.redisReads
	r.latencies = append(r.latencies, o.latencies...)
	r.sortedOnce = false
}
func (r *result) pct(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	if !r.sortedOnce {
		slices.Sort(r.latencies)
		r.sortedOnce = true
	}
	return r.latencies[min(int(float64(len(r.latencies))*p), len(r.latencies)-1)]
}

// fetchProfile saves a CPU profile of the process whose metrics listener is at addr, over the
// warm-up and the measurement that start now (d), to path.
func fetchProfile(addr string, d time.Duration, path string) error {
	secs := int((d + *warmup).Seconds())
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, max(secs, 1)))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syscalls returns how many read and write system calls the process has made (/proc/<pid>/io
// syscr and syscw): a forwarded request costs a few of each, and a proxy that writes in more
// pieces than another pays for it in kernel time.
func syscalls(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	var n int64
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ": ")
		if k == "syscr" || k == "syscw" {
			x, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/io %s: %w", pid, k, err)
			}
			n += x
		}
	}
	return n, nil
}

// cpu returns the process's user+system CPU time (/proc/<pid>/stat utime and stime).
func cpu(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+2:])
	// Fields after the command: state is f[0], so utime (14th field) is f[11], stime f[12].
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

// redisStats returns total_commands_processed and total_reads_processed of the server at addr
// (a raw RESP INFO; only store speaks go-redis).
func redisStats(addr string) (cmds, reads int64, err error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "*2\r\n$4\r\nINFO\r\n$5\r\nstats\r\n"); err != nil {
		return 0, 0, err
	}
	r := bufio.NewReader(c)
	hdr, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(hdr, "$") {
		return 0, 0, fmt.Errorf("INFO: %q %v", hdr, err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(hdr[1:]))
	body := make([]byte, n+2)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, 0, err
	}
	found := 0
	for line := range strings.Lines(string(body)) {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "total_commands_processed:"); ok {
			cmds, err = strconv.ParseInt(v, 10, 64)
			found++
		} else if v, ok := strings.CutPrefix(line, "total_reads_processed:"); ok {
			reads, err = strconv.ParseInt(v, 10, 64)
			found++
		}
		if err != nil {
			return 0, 0, fmt.Errorf("INFO: %w", err)
		}
	}
	if found != 2 {
		return 0, 0, errors.New("INFO: no total_commands_processed or total_reads_processed")
	}
	return cmds, reads, nil
}
