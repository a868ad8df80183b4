package brokk

/*
#include <stdlib.h>
#include "brokk.h"
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// TopicName maps any string onto a topic name fragment of at most maxLen bytes
// (brokk_topic_name_part), the same way in every language: bytes of [A-Za-z0-9.-] are kept,
// every other byte of its UTF-8 (the escape character _ included) becomes _ and two lowercase
// hex digits ("my app" -> "my_20app"); if that is longer than maxLen, it is cut and followed by
// _x and the 16 hex digits of the 64-bit FNV-1a hash of s. Different strings give different
// fragments (truncated ones: unless their hashes collide), and a fragment never contains "__".
// Errors: ErrInvalidUTF8; ErrInvalidArgument if the fragment must be truncated and maxLen is
// below 18.
func TopicName(s string, maxLen int) (string, error) {
	if maxLen < 0 {
		return "", errorf("topic name", StatusInvalidArgument, "maxLen %d is negative", maxLen)
	}
	p, n := cText(s)
	buf := make([]byte, maxLen+1)
	var length C.size_t
	// brokk_last_error is per thread: read it on the thread of the call.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	st := C.brokk_topic_name_part(p, n, C.size_t(maxLen), (*C.char)(unsafe.Pointer(&buf[0])),
		C.size_t(len(buf)), &length)
	runtime.KeepAlive(s)
	if st != C.BROKK_STATUS_OK {
		return "", &Error{Op: "topic name", Status: Status(st), Message: C.GoString(C.brokk_last_error())}
	}
	return string(buf[:length]), nil
}
