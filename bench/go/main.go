// Command gobench is scenario 1 (1 publisher -> 1 auto-ack subscriber) through the Go binding
// (bindings/go): the same payloads, warm-up and bounds as bench/c/brokk_bench.c, and the same
// one-line JSON record on stdout.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"time"

	brokk "github.com/brokk/brokk/bindings/go"
)

const s32 = "abcdefghijklmnopqrstuvwxyz012345"

// payload appends the payload of message n to buf[:0]: {"i": n, "s": "<32 chars>"}.
func payload(buf []byte, n uint64) []byte {
	buf = append(buf[:0], `{"i": `...)
	buf = strconv.AppendUint(buf, n, 10)
	buf = append(buf, `, "s": "`...)
	buf = append(buf, s32...)
	return append(buf, `"}`...)
}

func die(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func main() {
	messages := flag.Uint64("messages", 2000000, "upper bound on measured messages")
	warmup := flag.Uint64("warmup", 200000, "messages before measuring")
	seconds := flag.Float64("seconds", 5, "time bound of the measured phase")
	flag.Float64("rate", 0, "unused (accepted for a uniform command line)")
	flag.Uint64("batch", 0, "unused")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the measured phase to this file (go tool pprof)")
	flag.CommandLine.Parse(os.Args[min(2, len(os.Args)):])
	if len(os.Args) < 2 || os.Args[1] != "1to1" {
		die("usage: gobench 1to1 [--messages N] [--warmup N] [--seconds S]")
	}

	b, err := brokk.Open("memory://", nil)
	if err != nil {
		die("open: %v", err)
	}
	var delivered, bytes atomic.Uint64
	_, err = b.Subscribe("bench", func(m *brokk.Message) brokk.Verdict {
		bytes.Add(uint64(len(m.Payload()))) // Payload copies, as a handler that keeps it would
		delivered.Add(1)
		return brokk.Ack
	}, nil)
	if err != nil {
		die("subscribe: %v", err)
	}
	buf := make([]byte, 0, 96)
	publish := func(first, max uint64, deadline time.Time) uint64 {
		var n uint64
		for n < max {
			if _, err := b.Publish("bench", payload(buf, first+n), nil); err != nil {
				die("publish: %v", err)
			}
			n++
			if n&1023 == 0 && time.Now().After(deadline) {
				break
			}
		}
		return n
	}
	join := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		if left, err := b.Join(ctx); err != nil {
			die("join: %v (%d left)", err, left)
		}
	}
	publish(0, *warmup, time.Now().Add(time.Hour))
	join()
	delivered.Store(0)

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			die("cpuprofile: %v", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			die("cpuprofile: %v", err)
		}
		defer f.Close()
	}
	t0 := time.Now()
	sent := publish(*warmup, *messages, t0.Add(time.Duration(*seconds*float64(time.Second))))
	tPub := time.Since(t0)
	join()
	elapsed := time.Since(t0).Seconds()
	pprof.StopCPUProfile() // a no-op without --cpuprofile
	got := delivered.Load()
	if got != sent {
		die("1to1: %d deliveries for %d messages", got, sent)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.Close(ctx); err != nil {
		die("close: %v", err)
	}
	rate := float64(got) / elapsed
	fmt.Printf("{\"scenario\": \"1to1\", \"impl\": \"brokk-go\", \"unit\": \"messages\", \"messages\": %d, "+
		"\"deliveries\": %d, \"seconds\": %.6f, \"rate\": %.1f, \"publish_rate\": %.1f, \"go\": %q}\n",
		sent, got, elapsed, rate, float64(sent)/tPub.Seconds(), runtime.Version())
	fmt.Fprintf(os.Stderr, "  %-10s %-16s %12.0f messages/s\n", "1to1", "brokk-go", rate)
}
