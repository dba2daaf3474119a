package main

// The revocation delay: from a change in Redis to every portcullis process denying.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/portcullis-proxy/portcullis/store"
)

// revocations measures the revocation delay of a membership (with cookie) and of sessions
// (a fresh sign-in per trial) on the three portcullis processes, and prints it.
func revocations(ctx context.Context, b *bed, st *store.Store, orgs *store.Orgs, user, cookie string) error {
	// Revocation delay: the three portcullis processes, warm, each polled until it denies.
	var urls []string
	for _, p := range b.procs {
		urls = append(urls, p.base+"/orgs/acme/x")
	}
	mem := store.Membership{Org: "acme", User: user, Kind: store.KindEmployee, Roles: []string{"user"}}
	memDelays, err := revocationDelays(*revokes, urls, func() (string, error) { return cookie, nil },
		func() error {
			_, err := orgs.Revoke(ctx, "acme", user, "admin|bench", "bench")
			return err
		},
		func() error {
			_, err := orgs.Grant(ctx, mem, "admin|bench", "bench")
			return err
		})
	if err != nil {
		return fmt.Errorf("membership revocation: %w", err)
	}
	n := max(*revokes/3, 5) // each trial signs in again through devidp
	sessDelays, err := revocationDelays(n, urls, func() (string, error) {
		ck, _, err := signIn("https://" + b.tlsL)
		return ck, err
	}, func() error {
		_, err := st.RevokeUser(ctx, user) // what `portcullis admin person offboard` does to sessions
		return err
	}, func() error { return nil })
	if err != nil {
		return fmt.Errorf("session revocation: %w", err)
	}
	printRevocations(len(urls), memDelays, sessDelays)
	return nil
}

// revocationDelays runs trials: a fresh cookie (session), every URL answering 200 several
// times (warm caches), then revoke, timed until each URL answers something else; restore
// undoes it. The delays of every URL and trial are in the result's latencies.
func revocationDelays(trials int, urls []string, session func() (string, error), revoke, restore func() error) (*result, error) {
	c := newClient(len(urls) * 2)
	defer c.CloseIdleConnections()
	status := func(u, cookie string) (int, error) {
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Cookie", cookie)
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	res := &result{}
	for range trials {
		cookie, err := session()
		if err != nil {
			return nil, err
		}
		for _, u := range urls {
			deadline := time.Now().Add(10 * time.Second)
			for ok := 0; ok < 3; {
				code, err := status(u, cookie)
				if err != nil {
					return nil, err
				}
				if code == 200 {
					ok++
				} else if time.Now().After(deadline) {
					return nil, fmt.Errorf("%s: %d before the revocation", u, code)
				}
			}
		}
		var wg sync.WaitGroup
		delays := make([]time.Duration, len(urls))
		errs := make([]error, len(urls))
		start := make(chan struct{})
		var t0 time.Time
		for i, u := range urls {
			wg.Go(func() {
				<-start
				for {
					code, err := status(u, cookie)
					if err != nil {
						errs[i] = err
						return
					}
					if code != 200 {
						delays[i] = time.Since(t0)
						return
					}
					if time.Since(t0) > 10*time.Second {
						errs[i] = fmt.Errorf("%s still admits 10s after the revocation", u)
						return
					}
				}
			})
		}
		t0 = time.Now()
		err = revoke()
		close(start)
		wg.Wait()
		if err := errors.Join(append(errs, err)...); err != nil {
			return nil, err
		}
		res.latencies = append(res.latencies, delays...)
		if err := restore(); err != nil {
			return nil, err
		}
	}
	return res, nil
}
