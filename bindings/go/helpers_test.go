package brokk

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// scale multiplies every wait bound (BROKK_TEST_TIMEOUT_SCALE, default 1), as the C suite's
// does. Bounds only keep a broken test from hanging; no test asserts how long anything took.
var scale = func() float64 {
	if s, err := strconv.ParseFloat(os.Getenv("BROKK_TEST_TIMEOUT_SCALE"), 64); err == nil && s > 0 {
		return s
	}
	return 1
}()

func scaled(d time.Duration) time.Duration { return time.Duration(float64(d) * scale) }

// patience bounds every wait for something that should happen.
func patience() time.Duration { return scaled(10 * time.Second) }

// waitCtx is a context with the patience deadline.
func waitCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), patience())
	t.Cleanup(cancel)
	return ctx
}

// expired is a context whose deadline has passed: Fetch only looks, Join only checks.
func expired() context.Context {
	ctx, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
	cancel()
	return ctx
}

// open opens a broker that is closed when the test ends (a test that leaves work queued
// force-closes it itself: Close waits for queued work).
// On a subtest of forEachBackend it opens that subtest's backend; elsewhere memory://.
func open(t *testing.T, opts *Options) *Broker {
	t.Helper()
	return openURL(t, backendOf(t), opts)
}

// openURL is open on the backend url names.
func openURL(t *testing.T, url string, opts *Options) *Broker {
	t.Helper()
	b, err := Open(url, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if rep, err := b.Close(waitCtx(t)); err != nil {
			t.Errorf("close at cleanup: %v (%+v)", err, rep)
		}
	})
	return b
}

// must(f())(t) is f's value, or the test fails with f's error.
func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func join(t *testing.T, b *Broker) {
	t.Helper()
	if left, err := b.Join(waitCtx(t)); err != nil {
		t.Fatalf("join: %v (%d left)", err, left)
	}
}

// eventually polls cond until it holds or patience runs out.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience())
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// receive takes one value from ch or fails the test.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(patience()):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// releases records every handle free_user_data deletes, through the package's test hook.
type releases struct {
	mu    sync.Mutex
	count map[handle]int
	total int
}

func watchReleases(t *testing.T) *releases {
	r := &releases{count: map[handle]int{}}
	hook := func(h handle) {
		r.mu.Lock()
		r.count[h]++
		r.total++
		r.mu.Unlock()
	}
	releaseHook.Store(&hook)
	t.Cleanup(func() { releaseHook.Store(nil) })
	return r
}

func (r *releases) snapshot() (total int, twice []handle) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for h, n := range r.count {
		if n != 1 {
			twice = append(twice, h)
		}
	}
	return r.total, twice
}

// settleHandles waits until the handles of brokers freed by earlier tests on brokk's threads
// are gone, and returns the live count.
func settleHandles(t *testing.T) int64 {
	t.Helper()
	runtime.GC()
	last := liveHandles.Load()
	for i := 0; i < 20; i++ {
		time.Sleep(5 * time.Millisecond)
		now := liveHandles.Load()
		if now == last {
			break
		}
		last = now
	}
	return last
}

// backendURLs maps each subtest of forEachBackend to the backend URL its brokers use.
var backendURLs sync.Map // *testing.T -> string

// forEachBackend runs body as two subtests, "memory" and "sqlite": open(t, …) inside body
// opens a broker on memory://, then on a fresh SQLite file in t.TempDir().
func forEachBackend(t *testing.T, body func(t *testing.T)) {
	t.Helper()
	for _, backend := range []string{"memory", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			url := "memory://"
			if backend == "sqlite" {
				url = sqliteURL(t.TempDir(), "brokk.db")
			}
			backendURLs.Store(t, url)
			t.Cleanup(func() { backendURLs.Delete(t) })
			body(t)
		})
	}
}

// backendOf is the backend URL forEachBackend chose for t, or memory://.
func backendOf(t *testing.T) string {
	if url, ok := backendURLs.Load(t); ok {
		return url.(string)
	}
	return "memory://"
}

// sqliteURL is the URL of the SQLite store dir/name (dir is absolute, as t.TempDir() is).
func sqliteURL(dir, name string) string { return "sqlite://" + filepath.Join(dir, name) }
