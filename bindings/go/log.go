package brokk

// brokk's operator log (brokk_log_set_callback, brokk_broker_set_log_callback) into log/slog.

/*
#include "shims.h"
*/
import "C"

import (
	"context"
	"log/slog"
	"runtime"
)

// LevelTrace is the slog level of brokk's TRACE records, below slog.LevelDebug.
const LevelTrace = slog.LevelDebug - 4

// slogLevel maps a brokk_log_level to slog's.
func slogLevel(l C.brokk_log_level) slog.Level {
	switch l {
	case C.BROKK_LOG_ERROR:
		return slog.LevelError
	case C.BROKK_LOG_WARN:
		return slog.LevelWarn
	case C.BROKK_LOG_INFO:
		return slog.LevelInfo
	case C.BROKK_LOG_DEBUG:
		return slog.LevelDebug
	default:
		return LevelTrace
	}
}

// SetLogger sends the log records of every broker that has no logger of its own
// (Options.Logger), and those of opening a store, to l: what an operator needs to hear (a
// store connection lost and regained, a lease that ran out, a dead process's groups collected,
// listener events dropped, a long wait for SQLite's write lock, what a close left behind),
// never one record per message at Info or above. Each record's message is brokk's text; its
// "target" attribute names the part of brokk that speaks ("brokk::redis", "brokk::close", ...).
// Levels map to slog's (TRACE to LevelTrace), and l decides which it takes (Handler.Enabled,
// asked for each record, so a slog.LevelVar applies at once). nil silences them again: brokk
// is silent until SetLogger is called.
//
// Records come on the brokk thread that saw the event, or on the goroutine inside a brokk
// call; l must be safe for concurrent use, as slog loggers are. A panicking handler is
// recovered and reported on standard error.
func SetLogger(l *slog.Logger) error {
	if l == nil {
		return check("set logger", C.gbrokk_log_set_callback(false, 0))
	}
	h := newHandle(&registration{logger: l})
	if err := check("set logger", C.gbrokk_log_set_callback(true, C.uintptr_t(h))); err != nil {
		dropHandle(h) // a failed registration takes nothing
		return err
	}
	return nil
}

// setBrokerLogger gives the broker at p its own log callback, into l.
func (b *Broker) setBrokerLogger(p *C.brokk_broker, l *slog.Logger) error {
	h := newHandle(&registration{logger: l})
	err := check("set logger", C.gbrokk_broker_set_log_callback(p, true, C.uintptr_t(h)))
	runtime.KeepAlive(b)
	if err != nil {
		dropHandle(h)
	}
	return err
}

//export gbrokkLog
func gbrokkLog(h C.uintptr_t, level C.brokk_log_level, target, message *C.char) {
	reg := handle(h).value()
	lvl := slogLevel(level)
	defer recoverLogger("brokk log record", C.GoString(message))
	ctx := context.Background()
	if reg == nil || reg.logger == nil || !reg.logger.Enabled(ctx, lvl) {
		return
	}
	reg.logger.LogAttrs(ctx, lvl, C.GoString(message), slog.String("target", C.GoString(target)))
}
