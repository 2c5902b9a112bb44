//go:build unix && !linux

package process

import "syscall"

// shell runs a command, appended as its last argument: no watcher where there is no
// parent-death signal.
var shell = []string{"/bin/sh", "-c"}

func parentDeathSignal(*syscall.SysProcAttr) {}

func pinThread() func() { return func() {} }
