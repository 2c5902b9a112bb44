package main

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"time"
)

// stopReason says why ctx ended: the signal it was stopped by ("interrupt signal received",
// as signal.NotifyContext puts it), or "stop requested".
func stopReason(ctx context.Context) string {
	if c := context.Cause(ctx); c != nil && c != context.Canceled { // a signal's cause also Is Canceled
		return c.Error()
	}
	return "stop requested"
}

// jsonLogger is the logger of a command that logs JSON (run with --log-format json, or its
// default off a terminal): main writes its own lines (the error it exits with, a second
// signal) and run its exit summary through it, so that every line is JSON.
var jsonLogger atomic.Pointer[slog.Logger]

// say writes one line of palleto's own to w: the text as is, or with JSON logs a JSON log line
// whose message is that text, with args as its attributes.
//
// The line is written whatever --log-level says: the exit summary and the error palleto exits
// with are what a user (or a script) reads last, also with --log-level warn.
func say(w io.Writer, level slog.Level, text string, args ...any) {
	if l := jsonLogger.Load(); l != nil {
		r := slog.NewRecord(time.Now(), level, text, 0)
		r.Add(args...)
		l.Handler().Handle(context.Background(), r)
		return
	}
	io.WriteString(w, text+"\n")
}

// logFormatFor resolves --log-format: "" is text on a terminal, json otherwise.
func logFormatFor(format string, w io.Writer) string {
	if format == "" {
		if isTerminal(w) {
			return "text"
		}
		return "json"
	}
	return format
}
