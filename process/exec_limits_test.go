//go:build unix

package process

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"
)

// TestExecOutputCapBoundsMemory is issue #24's 1 GB case: a program that prints 1 GB is stopped
// at MaxExecOutput and fails permanently, and this process allocates a small multiple of the cap
// for it, not the gigabyte (before the fix, os/exec's io.Copy went through the promoted
// ReadFrom of a bytes.Buffer and held all of it).
func TestExecOutputCapBoundsMemory(t *testing.T) {
	p, err := New("exec", Options{Exec: "cat >/dev/null; head -c 1000000000 /dev/zero"})
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = p.Process(context.Background(), Object{Key: "k"}, strings.NewReader("a\n"))
	runtime.ReadMemStats(&after)
	allocated := float64(after.TotalAlloc-before.TotalAlloc) / (1 << 20)
	t.Logf("a program printing 1 GB: %.1f MiB allocated; err %v", allocated, err)
	if err == nil || !errors.Is(err, ErrPermanent) || !strings.Contains(err.Error(), "printed more than 16777216 bytes") {
		t.Errorf("err = %v, want a permanent failure saying the program printed more than 16777216 bytes", err)
	}
	if allocated > 4*MaxExecOutput>>20 {
		t.Errorf("%.1f MiB allocated for one run, want at most %d MiB (4x the cap)", allocated, 4*MaxExecOutput>>20)
	}
}

// pidIn waits for a program to write its pid to path.
func pidIn(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		data, _ := os.ReadFile(path)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie, dead but not reaped, does not count).
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return syscall.Kill(pid, 0) == nil // no /proc: ask the kernel
	}
	s := string(data)
	return !strings.HasPrefix(s[strings.LastIndexByte(s, ')')+2:], "Z")
}

// gone waits for pid to die of the SIGKILL its run's end sent (the signal is asynchronous), and
// fails if it lives on.
func gone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("pid %d outlived the run", pid)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestExecChildHoldingTheOutput is issue #24's item 10: the shell exits 0 at once but leaves a
// background job that holds its stdout. The run fails (retryably) saying so, not "still running
// after --exec-timeout", and the job is gone when Process returns.
func TestExecChildHoldingTheOutput(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "pid")
	p, err := New("exec", Options{Exec: "cat >/dev/null; sh -c 'echo $$ > " + pidfile + "; exec sleep 120' & echo forked", ExecTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Process(context.Background(), Object{Key: "k"}, strings.NewReader("a\n"))
	pid := pidIn(t, pidfile)
	gone(t, pid)
	if err == nil || errors.Is(err, ErrPermanent) || !strings.Contains(err.Error(), "exited 0, but left a child process") || strings.Contains(err.Error(), "still running") {
		t.Fatalf("err = %v, want a retryable failure saying the program exited 0 but left a child holding its output", err)
	}
}

// TestReadCapped: exactly max bytes is kept; one more is over, whatever the read sizes.
func TestReadCapped(t *testing.T) {
	for _, tt := range []struct {
		n, max int
		over   bool
	}{{0, 10, false}, {10, 10, false}, {11, 10, true}, {200 << 10, 200 << 10, false}, {200<<10 + 1, 200 << 10, true}, {5, 200 << 10, false}} {
		for _, half := range []bool{false, true} {
			var r io.Reader = strings.NewReader(strings.Repeat("x", tt.n))
			if half {
				r = iotest.HalfReader(r)
			}
			data, over := readCapped(r, tt.max)
			if over != tt.over || (!over && len(data) != tt.n) {
				t.Errorf("%d bytes, max %d (half reads %v): %d bytes, over %v", tt.n, tt.max, half, len(data), over)
			}
		}
	}
}

// TestExecBackgroundJobIsKilled: a background job that does not hold the output does not fail
// the run, but it does not outlive it either.
func TestExecBackgroundJobIsKilled(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "pid")
	// The program waits for the job to have written its pid before it ends: otherwise the run
	// could end, and the group be killed, before the job wrote it.
	p, _ := New("exec", Options{Exec: "sh -c 'echo $$ > " + pidfile + ".tmp; mv " + pidfile + ".tmp " + pidfile + "; exec sleep 120' >/dev/null 2>&1 & while [ ! -s " + pidfile + " ]; do :; done; wc -l"})
	f, err := p.Process(context.Background(), Object{Key: "k"}, strings.NewReader("a\nb\n"))
	if err != nil || string(f["output"].(json.RawMessage)) != "2" {
		t.Fatalf("fields %v, err %v; want output 2", f, err)
	}
	gone(t, pidIn(t, pidfile))
}

// TestExecOutputHeldOutsideTheGroup: a process that left the group (setsid) and holds stdout
// cannot be killed with it; the run fails saying so once execWaitDelay has passed, and returns.
func TestExecOutputHeldOutsideTheGroup(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("no setsid")
	}
	pidfile := filepath.Join(t.TempDir(), "pid")
	p, _ := New("exec", Options{Exec: "cat >/dev/null; setsid sh -c 'echo $$ > " + pidfile + "; exec sleep 120' & echo forked"})
	_, err := p.Process(context.Background(), Object{Key: "k"}, strings.NewReader("a\n"))
	syscall.Kill(pidIn(t, pidfile), syscall.SIGKILL)
	if err == nil || errors.Is(err, ErrPermanent) || !strings.Contains(err.Error(), "a process outside its process group (setsid?) still held its stdout") {
		t.Fatalf("err = %v, want a retryable failure naming a process outside the group", err)
	}
}
