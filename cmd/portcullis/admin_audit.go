package main

// `portcullis admin audit tail`: read the audit stream, optionally following it.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// followBlock is how long one read of `audit tail --follow` waits for new events. The loop
// checks for an interrupt between reads, so it also bounds how long stopping takes.
const followBlock = time.Second

func adminAuditTail(a *adminRun) int {
	follow := a.fs.Bool("follow", false, "keep printing new events until interrupted (Ctrl-C)")
	since := a.fs.String("since", "", `print the events after this event id; "0" from the oldest kept, "$" only new ones (default: the newest N)`)
	count := a.fs.Int("count", 100, "print at most N events: the newest N, or the first N after --since (with --follow: read at most N at a time)")
	if !a.parse() {
		return 2
	}
	if *count <= 0 {
		a.bad("--count", "%d: must be positive", *count)
	}
	if !validPosition(*since) {
		a.bad("--since", "%q: want an event id as printed by audit tail (1732870000000-0), 0 or $", *since)
	}
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	ctx := a.ctx
	if *follow {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	pos := *since
	for {
		var block time.Duration
		if *follow {
			block = followBlock
		}
		events, next, err := a.be.Tail(ctx, pos, *count, block)
		if err != nil {
			if *follow && ctx.Err() != nil {
				return 0 // interrupted while waiting
			}
			return a.fail(err)
		}
		for _, e := range events {
			if err := a.printEvent(e); err != nil {
				fmt.Fprintf(a.stderr, "portcullis %s: %v\n", a.name, err)
				return 1
			}
		}
		pos = next
		if !*follow || ctx.Err() != nil {
			return 0
		}
	}
}

// printEvent prints e as a JSON line (--json) or as one readable line.
func (a *adminRun) printEvent(e audit.Event) error {
	if a.json {
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("encode event %s: %w", e.ID, err)
		}
		_, err = fmt.Fprintf(a.stdout, "%s\n", b)
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %-20s %s", e.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"), e.Type, e.ID)
	for _, kv := range [][2]string{{"actor", e.Actor}, {"org", e.Org}, {"user", e.User}, {"route", e.Route}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, " %s=%s", kv[0], kv[1])
		}
	}
	if e.Reason != "" {
		fmt.Fprintf(&b, " reason=%s", strconv.Quote(e.Reason))
	}
	if ch := changedFields(e.Before, e.After); len(ch) > 0 {
		fmt.Fprintf(&b, " changed=%s", strings.Join(ch, ","))
	}
	for _, k := range slices.Sorted(maps.Keys(e.Detail)) {
		fmt.Fprintf(&b, " %s=%s", k, strconv.Quote(e.Detail[k]))
	}
	b.WriteByte('\n')
	_, err := io.WriteString(a.stdout, b.String())
	return err
}

// changedFields lists the top-level fields that differ between two stored records, sorted,
// ignoring "updated". Nil when either is not a JSON object (a creation has no before).
func changedFields(before, after json.RawMessage) []string {
	if len(before) == 0 || len(after) == 0 {
		return nil
	}
	var b, a map[string]json.RawMessage
	if json.Unmarshal(before, &b) != nil || json.Unmarshal(after, &a) != nil {
		return nil
	}
	var out []string
	for k, v := range a {
		if k != "updated" && !bytes.Equal(v, b[k]) {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok && k != "updated" {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// validPosition accepts what Tail does: "", "0", "$", or an id "<ms>[-<seq>]".
func validPosition(s string) bool {
	if s == "" || s == "0" || s == "$" {
		return true
	}
	ms, seq, hasSeq := strings.Cut(s, "-")
	return len(ms) <= 20 && syntax.Digits(ms) && (!hasSeq || len(seq) <= 20 && syntax.Digits(seq))
}
