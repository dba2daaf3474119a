package main

// The tables run prints.

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// printTable prints the load results as a Markdown table, each target beside its bare reference.
func printTable(targets []target, results map[string]*result, byRound, paired map[string][]*result, per time.Duration) {
	fmt.Printf("\n%d connections, 1 KiB responses, keep-alive, loopback, %d rounds × %v per target (alternating; a target compared with a bare proxy shares its cell with it, in %v slices)\n\n", *conns, *rounds, per, sliceLen)
	fmt.Printf("| %-28s | %9s | %8s | %8s | %11s | %8s | %9s | %9s | %12s | %12s |\n", "target", "req/s", "p50", "p99", "CPU/req", "sys/req", "redis/req", "cmds/req", "rps/bare med", "CPU/bare med")
	fmt.Printf("|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 30), strings.Repeat("-", 11), strings.Repeat("-", 10), strings.Repeat("-", 10), strings.Repeat("-", 13), strings.Repeat("-", 10), strings.Repeat("-", 11), strings.Repeat("-", 11), strings.Repeat("-", 14), strings.Repeat("-", 14))
	for _, tg := range targets {
		res := results[tg.name]
		if res == nil {
			continue
		}
		rr, cr := "1.00", "1.00"
		if ref := paired[tg.name]; ref != nil {
			rr = fmt.Sprintf("%.2f", medianRatio(byRound[tg.name], ref, (*result).rps))
			cr = fmt.Sprintf("%.2f", medianRatio(byRound[tg.name], ref, (*result).cpuPerReq))
		}
		fmt.Printf("| %-28s | %9.0f | %8s | %8s | %8.1f µs | %8.1f | %9.2f | %9.2f | %12s | %12s |\n", tg.name, res.rps(),
			fmtDur(res.pct(0.50)), fmtDur(res.pct(0.99)), res.cpuPerReq(), res.syscallsPerReq(), res.tripsPerReq(), res.redisPerReq(), rr, cr)
	}
	fmt.Printf("\nsys/req: read and write system calls of the proxy process per request; redis/req: Redis round trips per request (read events at the server); cmds/req: commands it ran, a script's own included.\n")
	fmt.Printf("rps/bare med, CPU/bare med: the median over rounds of each round's ratio to the bare proxy measured in the slices interleaved with the target's (robust to the machine's speed drifting, and to a noisy neighbour slowing one round); req/s and CPU/req are over all rounds.\n")
}

// printRevocations prints the membership and session revocation delays over nURLs processes
// as a Markdown table.
func printRevocations(nURLs int, memDelays, sessDelays *result) {
	fmt.Printf("\nRevocation delay (pub/sub working), from the change in Redis to each of %d processes denying, all caches warm:\n\n", nURLs)
	fmt.Printf("| %-32s | %6s | %8s | %8s | %8s |\n", "change", "trials", "p50", "p99", "max")
	fmt.Printf("|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 34), strings.Repeat("-", 8), strings.Repeat("-", 10), strings.Repeat("-", 10), strings.Repeat("-", 10))
	for _, d := range []struct {
		name string
		r    *result
	}{{"membership revoked (403)", memDelays}, {"sessions revoked (401)", sessDelays}} {
		fmt.Printf("| %-32s | %6d | %8s | %8s | %8s |\n", d.name, len(d.r.latencies)/nURLs, fmtMs(d.r.pct(0.5)), fmtMs(d.r.pct(0.99)), fmtMs(d.r.pct(1)))
	}
}

// medianRatio is the median over rounds of a's measure over b's in the same round.
func medianRatio(a, b []*result, measure func(*result) float64) float64 {
	var rs []float64
	for i := range min(len(a), len(b)) {
		rs = append(rs, measure(a[i])/measure(b[i]))
	}
	if len(rs) == 0 {
		return 0
	}
	slices.Sort(rs)
	if len(rs)%2 == 1 {
		return rs[len(rs)/2]
	}
	return (rs[len(rs)/2-1] + rs[len(rs)/2]) / 2
}

func fmtMs(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
}
