package brokk

/*
#include "shims.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// Status is a brokk_status: 0 for success, otherwise why a call failed. Every Status other
// than StatusOK is also an error; the Err* sentinels are these values.
type Status uint32

// The statuses of brokk.h, numbered as there.
const (
	StatusOK                  Status = C.BROKK_STATUS_OK
	StatusNullArgument        Status = C.BROKK_STATUS_NULL_ARGUMENT
	StatusInvalidUTF8         Status = C.BROKK_STATUS_INVALID_UTF8
	StatusInvalidJSON         Status = C.BROKK_STATUS_INVALID_JSON
	StatusInvalidTopic        Status = C.BROKK_STATUS_INVALID_TOPIC
	StatusInvalidID           Status = C.BROKK_STATUS_INVALID_ID
	StatusPayloadTooLarge     Status = C.BROKK_STATUS_PAYLOAD_TOO_LARGE
	StatusInvalidArgument     Status = C.BROKK_STATUS_INVALID_ARGUMENT
	StatusInvalidURL          Status = C.BROKK_STATUS_INVALID_URL
	StatusBufferTooSmall      Status = C.BROKK_STATUS_BUFFER_TOO_SMALL
	StatusWouldDeadlock       Status = C.BROKK_STATUS_WOULD_DEADLOCK
	StatusUnsupportedBackend  Status = C.BROKK_STATUS_UNSUPPORTED_BACKEND
	StatusInvalidGroup        Status = C.BROKK_STATUS_INVALID_GROUP
	StatusIncompatibleStore   Status = C.BROKK_STATUS_INCOMPATIBLE_STORE
	StatusCannotOpenStore     Status = C.BROKK_STATUS_CANNOT_OPEN_STORE
	StatusUnknownSubscription Status = C.BROKK_STATUS_UNKNOWN_SUBSCRIPTION
	StatusUnknownDelivery     Status = C.BROKK_STATUS_UNKNOWN_DELIVERY
	StatusAlreadySettled      Status = C.BROKK_STATUS_ALREADY_SETTLED
	StatusUnknownListener     Status = C.BROKK_STATUS_UNKNOWN_LISTENER
	StatusTimeout             Status = C.BROKK_STATUS_TIMEOUT
	StatusFull                Status = C.BROKK_STATUS_FULL
	StatusUnavailable         Status = C.BROKK_STATUS_UNAVAILABLE
	StatusStorageFailed       Status = C.BROKK_STATUS_STORAGE_FAILED
	StatusOutcomeUnknown      Status = C.BROKK_STATUS_OUTCOME_UNKNOWN
	StatusCancelled           Status = C.BROKK_STATUS_CANCELLED
	StatusClosed              Status = C.BROKK_STATUS_CLOSED
	StatusForked              Status = C.BROKK_STATUS_FORKED
	StatusPanic               Status = C.BROKK_STATUS_PANIC
)

// Sentinels, one per failing status, for errors.Is. Every error this package returns for a
// failed brokk call is an *Error that matches exactly one of them.
var (
	ErrNullArgument        error = StatusNullArgument
	ErrInvalidUTF8         error = StatusInvalidUTF8
	ErrInvalidJSON         error = StatusInvalidJSON
	ErrInvalidTopic        error = StatusInvalidTopic
	ErrInvalidID           error = StatusInvalidID
	ErrPayloadTooLarge     error = StatusPayloadTooLarge
	ErrInvalidArgument     error = StatusInvalidArgument
	ErrInvalidURL          error = StatusInvalidURL
	ErrBufferTooSmall      error = StatusBufferTooSmall
	ErrWouldDeadlock       error = StatusWouldDeadlock
	ErrUnsupportedBackend  error = StatusUnsupportedBackend
	ErrInvalidGroup        error = StatusInvalidGroup
	ErrIncompatibleStore   error = StatusIncompatibleStore // not a brokk store, a newer one, or corrupt
	ErrCannotOpenStore     error = StatusCannotOpenStore   // the store cannot be opened as given
	ErrUnknownSubscription error = StatusUnknownSubscription
	ErrUnknownDelivery     error = StatusUnknownDelivery
	ErrAlreadySettled      error = StatusAlreadySettled
	ErrUnknownListener     error = StatusUnknownListener
	ErrTimeout             error = StatusTimeout
	ErrFull                error = StatusFull
	ErrUnavailable         error = StatusUnavailable   // the store is out of reach for now
	ErrStorageFailed       error = StatusStorageFailed // the store failed to read or write
	// ErrOutcomeUnknown: the connection to a server broke after the request may have reached
	// it, so the call may or may not have taken effect (a publish may be published, an ack
	// applied). Retrying a publish may publish it twice; a retried ack or nack may fail with
	// ErrUnknownDelivery or ErrAlreadySettled. ErrUnavailable, by contrast, means nothing was
	// done.
	ErrOutcomeUnknown error = StatusOutcomeUnknown
	// ErrCancelled: a call's brokk_cancel token was cancelled; the call did nothing. The
	// binding's waits return ctx.Err() instead (context.Canceled), so this is only for
	// completeness.
	ErrCancelled error = StatusCancelled
	ErrClosed    error = StatusClosed
	// ErrForked: the broker was made by the parent of this process before a fork; a child
	// must open a broker of its own (closing the parent's there is safe and releases nothing).
	ErrForked error = StatusForked
	ErrPanic  error = StatusPanic
)

// String is brokk_status_str: a static description.
func (s Status) String() string {
	return C.GoString(C.brokk_status_str(C.uint32_t(s)))
}

// Error makes a Status usable as a sentinel error.
func (s Status) Error() string {
	return "brokk: " + s.String()
}

// Class is brokk_status_classify.
func (s Status) Class() Class {
	return Class(C.brokk_status_classify(C.uint32_t(s)))
}

// Class says what kind of failure a status is (brokk_status_class).
type Class uint32

const (
	ClassOK        Class = C.BROKK_STATUS_CLASS_OK        // success
	ClassCaller    Class = C.BROKK_STATUS_CLASS_CALLER    // the same call will fail again
	ClassTransient Class = C.BROKK_STATUS_CLASS_TRANSIENT // retrying later may succeed
	ClassTerminal  Class = C.BROKK_STATUS_CLASS_TERMINAL  // the broker is closed
	ClassBug       Class = C.BROKK_STATUS_CLASS_BUG       // a bug in brokk, or an unknown status
)

func (c Class) String() string {
	switch c {
	case ClassOK:
		return "ok"
	case ClassCaller:
		return "caller"
	case ClassTransient:
		return "transient"
	case ClassTerminal:
		return "terminal"
	case ClassBug:
		return "bug"
	}
	return fmt.Sprintf("Class(%d)", uint32(c))
}

// Error is a failed brokk call: the operation, the status and brokk's detailed message.
// errors.Is matches it against the sentinel of its status.
type Error struct {
	Op      string // the method that failed, e.g. "publish"
	Status  Status // the C status
	Message string // brokk_last_error() of the failing call, or the binding's own explanation
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("brokk: %s: %s", e.Op, e.Status.String())
	}
	return fmt.Sprintf("brokk: %s: %s: %s", e.Op, e.Status.String(), e.Message)
}

// Unwrap returns the Status, so errors.Is(err, ErrTimeout) and the like work.
func (e *Error) Unwrap() error { return e.Status }

// Class is the class of the error's status.
func (e *Error) Class() Class { return e.Status.Class() }

// ClassOf gives the class of a brokk error anywhere in err's chain: ClassOK for nil, ClassBug
// for an error that did not come from brokk.
func ClassOf(err error) Class {
	if err == nil {
		return ClassOK
	}
	var s Status
	if errors.As(err, &s) {
		return s.Class()
	}
	return ClassBug
}

// check turns a wrapped call's result into an error, freeing the copied message.
func check(op string, r C.gbrokk_result) error {
	if r.status == C.BROKK_STATUS_OK {
		return nil
	}
	msg := ""
	if r.last_error != nil {
		msg = C.GoString(r.last_error)
		C.free(unsafe.Pointer(r.last_error))
	}
	return &Error{Op: op, Status: Status(r.status), Message: msg}
}

// errorf is an error the binding raises itself, with the status brokk would have given.
func errorf(op string, s Status, format string, args ...any) error {
	return &Error{Op: op, Status: s, Message: fmt.Sprintf(format, args...)}
}
