package brokk

import (
	"log/slog"
	"sync"
	"sync/atomic"
)

// Each registered callback (a Handler, a Listener) travels to brokk as a handle in user_data:
// an integer, never a Go pointer, which C may not keep. The handle is deleted exactly once: by
// brokk's free_user_data (gbrokkRelease) after the last invocation, or here when the
// registration failed (brokk then takes nothing). While brokk holds it, the handle table is
// the only thing keeping the Go value alive; no other Go registry refers to it.
//
// The table does what runtime/cgo.Handle does, with a lookup that costs two loads instead of
// a sync.Map search with interface hashing: every delivery looks its handler up. A handle is
// a slot index (low 32 bits) and the slot's generation (high bits), so that a slot reused by a
// later registration never gives it a handle that was seen before.

// handle identifies one registration.
type handle uintptr

// registration is what a handle refers to: a subscription's handler or a listener, and the
// logger of its broker (Options.Logger; nil: slog.Default()) for reporting their panics. It
// holds no reference to the Broker itself.
type registration struct {
	handler  Handler
	listener *Listener
	logger   *slog.Logger
}

const (
	handleChunkBits = 8 // slots per chunk: 256
	handleChunkSize = 1 << handleChunkBits
	handleIndexBits = 32
	handleIndexMask = 1<<handleIndexBits - 1
)

type handleSlot struct {
	reg atomic.Pointer[registration]
	gen uint32 // generation of the handle now in the slot; written under handleTable.mu
}

// Chunks never move once allocated, so a slot's address is stable; only the directory (the
// slice of chunk pointers) is copied when it grows.
type handleChunk [handleChunkSize]handleSlot

type handleTable struct {
	chunks atomic.Pointer[[]*handleChunk] // read without the lock
	mu     sync.Mutex                     // registrations and releases
	used   uint32                         // slots ever handed out
	free   []uint32                       // released slots
}

var handles handleTable

// liveHandles counts handles created and not yet deleted (for tests, and for leak hunting).
var liveHandles atomic.Int64

// releaseHook, if set, is called with every handle that free_user_data deletes; tests use it
// to see that each handle is released exactly once.
var releaseHook atomic.Pointer[func(handle)]

func (t *handleTable) slot(index uint32) *handleSlot {
	return &(*t.chunks.Load())[index>>handleChunkBits][index&(handleChunkSize-1)]
}

// newHandle registers r and returns its handle.
func newHandle(r *registration) handle {
	t := &handles
	t.mu.Lock()
	defer t.mu.Unlock()
	var index uint32
	if n := len(t.free); n > 0 {
		index = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		index = t.used
		t.used++
		var dir []*handleChunk
		if p := t.chunks.Load(); p != nil {
			dir = *p
		}
		if int(index>>handleChunkBits) == len(dir) {
			grown := make([]*handleChunk, len(dir)+1)
			copy(grown, dir)
			grown[len(dir)] = new(handleChunk)
			t.chunks.Store(&grown)
		}
	}
	s := t.slot(index)
	s.gen++
	s.reg.Store(r) // publishes r to the thread that looks it up (the store is a release)
	liveHandles.Add(1)
	return handle(uintptr(s.gen)<<handleIndexBits | uintptr(index))
}

// value is the registration of a live handle: what brokk's callbacks look up. brokk calls
// nothing with a handle after its free_user_data, so the slot still holds this registration.
func (h handle) value() *registration {
	return handles.slot(uint32(h & handleIndexMask)).reg.Load()
}

// delete removes the handle's registration and returns it; the slot may be reused.
func (h handle) delete() *registration {
	t := &handles
	index := uint32(h & handleIndexMask)
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.slot(index).reg.Swap(nil)
	t.free = append(t.free, index)
	liveHandles.Add(-1)
	return r
}

// dropHandle deletes a handle brokk never took (a failed registration).
func dropHandle(h handle) {
	h.delete()
}
