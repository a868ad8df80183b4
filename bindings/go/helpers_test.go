package brokk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMain stops the package's redis-server (if a test started one) after the tests have run.
func TestMain(m *testing.M) {
	code := m.Run()
	if err := redis.stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// redisServer is the one redis-server of a test run: core/src/store/redis/test-server.sh starts it on the
// first "redis" subtest of forEachBackend (so `go test -list` and runs with no such subtest start
// nothing), owned by this process's pid (its watchdog kills it within a second if the test binary
// dies), and TestMain stops it after m.Run. Without redis-server the redis subtests fail, saying
// why; they never skip.
type redisServer struct {
	once sync.Once
	dir  string
	url  string // redis://127.0.0.1:PORT/0
	err  error
}

var redis redisServer

// serverScript is core/src/store/redis/test-server.sh (the tests run in bindings/go).
func serverScript() string {
	return filepath.Join("..", "..", "core", "src", "store", "redis", "test-server.sh")
}

func (r *redisServer) baseURL() (string, error) {
	r.once.Do(func() {
		dir, err := os.MkdirTemp("", "brokk-go-redis-")
		if err != nil {
			r.err = err
			return
		}
		r.dir = dir
		out, err := exec.Command("sh", serverScript(), "start", dir, strconv.Itoa(os.Getpid())).Output()
		if err != nil {
			msg := ""
			if ee, ok := err.(*exec.ExitError); ok {
				msg = strings.TrimSpace(string(ee.Stderr))
			}
			r.err = fmt.Errorf("core/src/store/redis/test-server.sh could not start redis-server (apt-get install redis-server): %v: %s", err, msg)
			return
		}
		r.url = "redis://127.0.0.1:" + strings.TrimSpace(string(out)) + "/0"
	})
	return r.url, r.err
}

func (r *redisServer) stop() error {
	if r.dir == "" {
		return nil
	}
	defer os.RemoveAll(r.dir)
	if out, err := exec.Command("sh", serverScript(), "stop", r.dir).CombinedOutput(); err != nil {
		return fmt.Errorf("stopping redis-server: %v: %s", err, out)
	}
	return nil
}

var redisPrefixes atomic.Uint64

// redisURL is the URL of a fresh store on the run's redis-server: a key prefix of t's own
// ("go<pid>-<n>-<test name>", at most 64 of letters, digits and "_.-").
func redisURL(t *testing.T) string {
	t.Helper()
	base, err := redis.baseURL()
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("go%d-%d-", os.Getpid(), redisPrefixes.Add(1))
	for _, c := range t.Name() {
		if len(prefix) >= 64 {
			break
		}
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-' {
			prefix += string(c)
		} else {
			prefix += "_"
		}
	}
	return base + "?prefix=" + prefix
}

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
	return receiveWithin(t, ch, patience(), what)
}

// receiveWithin takes one value from ch or fails the test once limit has passed.
func receiveWithin[T any](t *testing.T, ch <-chan T, limit time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(limit):
		t.Fatalf("timed out after %v waiting for %s", limit, what)
		panic("unreachable")
	}
}

// cancelWhileBlocked runs call with a context that has no deadline, cancels it once call has
// had time to block in brokk, and returns call's error, which must come within 5 s (scaled) of
// the cancel: a generous bound that only keeps a wait the cancel did not reach from hanging.
// (A cancel that comes before call has started must give the same result.)
func cancelWhileBlocked(t *testing.T, what string, call func(ctx context.Context) error) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- call(ctx) }()
	time.Sleep(scaled(50 * time.Millisecond))
	cancel()
	return receiveWithin(t, done, scaled(5*time.Second), what+" after its context was cancelled")
}

// cancelled is a context that was cancelled before it was used.
func cancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// A taker is Fetch, FetchBatch or Take on topic (group "default"), settling what it gets:
// got says whether something came.
type taker struct {
	name string
	take func(ctx context.Context, b *Broker, topic string) (got bool, err error)
}

var takers = []taker{
	{"fetch", func(ctx context.Context, b *Broker, topic string) (bool, error) {
		d, err := b.Fetch(ctx, topic, nil)
		if d != nil {
			return true, errors.Join(err, d.Ack())
		}
		return false, err
	}},
	{"fetch-batch", func(ctx context.Context, b *Broker, topic string) (bool, error) {
		ds, err := b.FetchBatch(ctx, topic, 10, nil)
		if len(ds) > 0 {
			ids := deliveryIDs(ds)
			for _, d := range ds {
				d.Close()
			}
			_, ackErr := b.AckBatch(ids)
			return true, errors.Join(err, ackErr)
		}
		return false, err
	}},
	{"take", func(ctx context.Context, b *Broker, topic string) (bool, error) {
		p, ok, err := b.Take(ctx, topic, nil)
		if ok != (p != nil) {
			return ok, fmt.Errorf("take: payload %q with ok %v", p, ok)
		}
		return ok, err
	}},
}

// blockJoin subscribes a handler to topic that holds the one delivery it is given until the
// test ends, publishes it, and returns once the handler has it: Join then waits.
func blockJoin(t *testing.T, b *Broker, topic string) {
	t.Helper()
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	must(b.Subscribe(topic, func(m *Message) Verdict {
		started <- struct{}{}
		<-release
		return Ack
	}, nil))(t)
	must(b.Publish(topic, []byte(`1`), nil))(t)
	receive(t, started, "the handler")
	// Registered after open's cleanup, so it runs first: the close at cleanup can drain.
	t.Cleanup(func() { close(release) })
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

// forEachBackend runs body as three subtests, "memory", "sqlite" and "redis": open(t, …) inside
// body opens a broker on memory://, then on a fresh SQLite file in t.TempDir(), then on the run's
// redis-server under a key prefix of the subtest's own (every open in one subtest shares the
// store, as they share the SQLite file).
func forEachBackend(t *testing.T, body func(t *testing.T)) {
	t.Helper()
	for _, backend := range []string{"memory", "sqlite", "redis"} {
		t.Run(backend, func(t *testing.T) {
			url := "memory://"
			switch backend {
			case "sqlite":
				url = sqliteURL(t.TempDir(), "brokk.db")
			case "redis":
				url = redisURL(t)
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
