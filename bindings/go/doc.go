// Package brokk is the Go binding of brokk, an embeddable message broker whose core is a Rust
// library with a C ABI (libbrokk.so, include/brokk.h). The binding is thin: every function
// maps to one C function, and the semantics (topics, groups, priorities, retention, verdicts,
// manual ack, fetch, deadlines, dead letters, backpressure, close) are the library's, described
// in the repository's docs/semantics.md.
//
// # Building
//
// The package finds the installed C library through pkg-config (`#cgo pkg-config: brokk`):
// install brokk (`make install PREFIX=...` in the repository, or the Debian package
// libbrokk-dev), then `go get github.com/brokk/brokk/bindings/go@vX.Y.Z` (a release of brokk
// X.Y.Z is tagged bindings/go/vX.Y.Z). For a prefix other than /usr and /usr/local, set
// PKG_CONFIG_PATH=PREFIX/lib/pkgconfig; brokk.pc then carries an rpath, so programs run
// without LD_LIBRARY_PATH. The build tag brokk_static links libbrokk.a instead
// (`pkg-config --static brokk-static`), so the program needs no libbrokk.so. CGO_CFLAGS and
// CGO_LDFLAGS, when set, come before pkg-config's flags. In the repository, `make test-go`
// needs no install: it points PKG_CONFIG_PATH at a brokk.pc for target/release (see
// bindings/go/README.md).
//
// # Lifetimes
//
//   - A [Broker] is safe for concurrent use by any number of goroutines. [Broker.Close] is the
//     way to release it; it is idempotent, and afterwards every method returns an error
//     matching [ErrClosed]. [Broker.ForceClose] drops what is left and returns at once, even
//     while a handler is blocked; that handler finishes on its own, and its Go value is
//     released on a brokk thread once it returns. A finaliser (runtime.AddCleanup) frees a Broker that becomes
//     unreachable without Close, as a safety net only.
//   - A [Message] given to a [Handler] or a [Listener] callback is a view into brokk's memory,
//     valid only until that callback returns. Its accessors copy what they return (strings,
//     byte slices), so the copies may be kept; the Message itself must not be. After the
//     callback returns, its accessors return zero values.
//   - A [Delivery] returned by [Broker.Fetch] or [Broker.FetchBatch] owns the C delivery handle.
//     It is freed by [Delivery.Close], or by [Delivery.Ack] and [Delivery.Nack], which settle and
//     then free it; its [Message] is valid until then. A finaliser frees a Delivery dropped
//     without that. [Broker.AckBatch] acks many by id in one call (close them as well).
//
// # Callbacks and threads
//
// Handlers and listener callbacks run on brokk's own threads (worker threads for handlers, one
// listener thread per broker), entered through cgo. They may call the Broker's methods (publish,
// subscribe, ack, ...) except Join and a non-forced Close, which return [ErrWouldDeadlock].
// A handler that panics is recovered: its delivery is nacked with the panic text as failure
// reason, which listeners see in OnFailed, and the panic is logged at slog.LevelError with the
// topic, delivery id, subscription id, attempt, panic value and stack. A listener callback
// that panics is recovered and logged the same way (with the event's name). The logger is
// [Options].Logger, or slog.Default() when that is nil. Handlers must not call runtime.Goexit
// (t.FailNow, for example).
//
// A Handler or Listener that refers to its own Broker keeps it reachable, so the finaliser can
// never free it: Close such brokers. The binding itself keeps no Go registry of what brokk
// already owns: each callback's Go value travels to brokk as an integer handle (a slot of the
// binding's handle table, which works like runtime/cgo.Handle with a cheaper lookup), deleted
// by brokk's free_user_data exactly once, after the last invocation.
//
// # Cost per message
//
// Each message costs one cgo call to publish and one cgo callback to handle. The C trampoline
// reads every field of the message (brokk_message_read) before it enters Go, so a [Message]'s
// accessors make no cgo call: they only copy. Publish allocates only the id string it returns;
// a handler call allocates the 8-byte Message. Fetch makes one cgo call per delivery, and
// FetchBatch two per batch. Take makes one per call and one more to free the payload brokk
// hands over, whatever its size, and allocates only the payload it returns. A context that can
// be cancelled adds a brokk_cancel token (two cgo calls: made and freed) and a
// context.AfterFunc to each wait: about a microsecond and four small allocations a Fetch
// (BenchmarkPullCancellable); reusing tokens saves nothing measurable.
//
// # Errors
//
// Every failure is an [*Error] carrying the C status and brokk_last_error()'s text, read in the
// same cgo call. Match it with errors.Is against the sentinels (ErrInvalidTopic, ErrTimeout,
// ErrClosed, ...), one per status; [ClassOf] gives the status class (caller mistake,
// transient, terminal, bug). Of the transient ones, [ErrUnavailable] means the call did
// nothing, while [ErrOutcomeUnknown] means a server's connection broke after the request may
// have reached it: the call may or may not have taken effect, so a retried publish may publish
// twice.
package brokk
