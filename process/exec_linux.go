package process

import (
	"runtime"
	"syscall"
)

// shell runs a command, appended as its last argument, under a watcher: a first /bin/sh, the
// group's leader, starts `/bin/sh -c COMMAND` (stdin passed through fd 3, since an asynchronous
// command's stdin is otherwise /dev/null) and waits for it, ending with its exit status. The
// watcher gets SIGTERM when Palleto dies, however it dies (parentDeathSignal), and its trap
// kills the whole group: the kernel's parent-death signal reaches only a direct child, not the
// members of a pipeline or a background job. The command's own shell ignores SIGINT and SIGQUIT
// (as any asynchronous command does); $0 is "sh".
var shell = []string{"/bin/sh", "-c",
	`trap 'kill -9 0' TERM; exec 3<&0 </dev/null; /bin/sh -c "$1" sh <&3 3<&- & exec 3<&-; wait $!`, "sh"}

// parentDeathSignal asks the kernel to send the watcher SIGTERM when the thread that started it
// ends: see pinThread.
func parentDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGTERM }

// pinThread keeps the calling goroutine on its OS thread until the returned func is called. The
// parent-death signal is sent when the thread that forked exits, not the process (go.dev/issue/27505):
// the thread must outlive the program, so Start and Wait run pinned.
func pinThread() func() {
	runtime.LockOSThread()
	return runtime.UnlockOSThread
}
