//go:build unix

package process

import (
	"errors"
	"os"
	"os/exec"
	"sync"
	"syscall"
)

// ownGroup runs the command in a process group of its own (its pid is the group's id) and, when
// os/exec cancels it (the deadline, the context), calls canceled and kills the whole group, so
// `sh -c 'a | b'` leaves nothing behind. On Linux it also asks for the parent-death signal.
func ownGroup(cmd *exec.Cmd, canceled func()) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	parentDeathSignal(cmd.SysProcAttr)
	cmd.Cancel = func() error {
		canceled()
		if err := killGroup(cmd.Process.Pid); errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		} else {
			return err
		}
	}
}

// killGroup sends SIGKILL to every process of the group pid leads.
func killGroup(pid int) error { return syscall.Kill(-pid, syscall.SIGKILL) }

// groupAlive reports whether a process of the group pid led is still there (a zombie not yet
// reaped counts).
func groupAlive(pid int) bool { return !errors.Is(syscall.Kill(-pid, 0), syscall.ESRCH) }

// running holds the process groups of the programs the exec processor runs now.
var running struct {
	sync.Mutex
	groups map[int]struct{}
}

// started and exited keep running up to date; a group is its leader's pid. A group is
// forgotten only once its run has ended and what was left of it was killed.
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
