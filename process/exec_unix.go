//go:build unix

package process

import (
	"os/exec"
	"sync"
	"syscall"
)

// killGroup runs the command in its own process group and kills the whole group on timeout or
// shutdown, so `sh -c 'a | b'` leaves nothing behind.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}

// running holds the process groups of the programs the exec processor runs now.
var running struct {
	sync.Mutex
	groups map[int]struct{}
}

// started and exited keep running up to date; a group is its leader's pid.
func started(pid int) {
	running.Lock()
	defer running.Unlock()
	if running.groups == nil {
		running.groups = map[int]struct{}{}
	}
	running.groups[pid] = struct{}{}
}

func exited(pid int) {
	running.Lock()
	defer running.Unlock()
	delete(running.groups, pid)
}

// KillAll kills the process groups of every program the exec processor is running: what a
// process that exits at once (a second signal) must do first, since those programs run in
// their own groups and would outlive it.
func KillAll() int {
	running.Lock()
	defer running.Unlock()
	for pid := range running.groups {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	return len(running.groups)
}
