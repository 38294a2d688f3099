package testbed

import (
	"context"
	"fmt"
	"time"
)

// MeasureRate sends one bulk TCP stream from one lab machine to another for
// warmup+d and returns the rate the receiver saw during d, in bits per
// second. Both ends are sockets of this process placed in the machines'
// network namespaces, so the traffic crosses both machines' shaped links
// and nothing else.
func (l *Lab) MeasureRate(ctx context.Context, from, to string, warmup, d time.Duration) (float64, error) {
	src, err := l.machine(from)
	if err != nil {
		return 0, err
	}
	dst, err := l.machine(to)
	if err != nil {
		return 0, err
	}
	ln, err := listenIn(dst.NetnsPath(), "tcp", dst.IP+":0")
	if err != nil {
		return 0, fmt.Errorf("measure rate: listen in %s: %w", to, err)
	}
	defer ln.Close()

	ctx, cancel := context.WithTimeout(ctx, warmup+d+30*time.Second)
	defer cancel()
	type result struct {
		bps float64
		err error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer conn.Close()
		go func() { <-ctx.Done(); _ = conn.Close() }()
		buf := make([]byte, 256<<10)
		var total, b0 int64
		var t0 time.Time
		start := time.Now()
		for {
			n, err := conn.Read(buf)
			total += int64(n)
			now := time.Now()
			if t0.IsZero() && now.Sub(start) >= warmup {
				t0, b0 = now, total
			}
			if !t0.IsZero() && now.Sub(t0) >= d {
				done <- result{bps: float64(total-b0) * 8 / now.Sub(t0).Seconds()}
				return
			}
			if err != nil {
				done <- result{err: fmt.Errorf("receive: %w", err)}
				return
			}
		}
	}()

	conn, err := dialIn(ctx, src.NetnsPath(), "tcp", ln.Addr().String())
	if err != nil {
		return 0, fmt.Errorf("measure rate: connect from %s: %w", from, err)
	}
	defer conn.Close()
	go func() { <-ctx.Done(); _ = conn.Close() }()
	// The sender writes until the receiver has its figure and hangs up.
	go func() {
		buf := make([]byte, 256<<10)
		for {
			if _, err := conn.Write(buf); err != nil {
				return
			}
		}
	}()
	r := <-done
	if r.err != nil {
		return 0, fmt.Errorf("measure rate %s -> %s: %w", from, to, r.err)
	}
	return r.bps, nil
}
