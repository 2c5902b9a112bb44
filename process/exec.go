package process

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultExecTimeout bounds one run of the exec processor when no timeout is given.
const DefaultExecTimeout = 10 * time.Minute

// MaxExecOutput is the most stdout the exec processor keeps; a program printing more is killed
// and the object fails permanently (the same program prints as much again on a retry).
const MaxExecOutput = 16 << 20

// ExitDataErr is the exit status (sysexits EX_DATAERR) by which a program says the object itself
// is bad: the failure is permanent. Any other non-zero status is retryable.
const ExitDataErr = 65

const (
	// execOutputGrace is how long a program's stdout and stderr may stay open after it exited
	// while processes it started still run in its group: past it, one of them holds the output.
	execOutputGrace = time.Second
	// execWaitDelay bounds the waits after a kill: for the program to die (os/exec's
	// WaitDelay), and for its output to close once its whole group is dead (past it, a process
	// that left the group, setsid, holds it).
	execWaitDelay = 5 * time.Second
)

var errNoCommand = errors.New("exec: a command is required (--exec 'COMMAND')")

// Exec runs a program for each object: /bin/sh -c COMMAND with the decompressed content on its
// stdin, and PALLETO_BUCKET, PALLETO_KEY, PALLETO_VERSION_ID, PALLETO_ETAG and PALLETO_ENCODING
// in its environment. Its stdout is the result (as JSON when it is JSON, else as a string).
// A non-zero exit or running past the timeout is a failure.
//
// Each run has a process group of its own, killed whole when the run ends (the program exited,
// ran out of time, printed too much, or the context ended), so nothing it started outlives it;
// on Linux the group is also killed when this process dies, even by kill -9 (see shell).
type Exec struct {
	command string
	timeout time.Duration
}

// NewExec checks the command and the timeout.
func NewExec(command string, timeout time.Duration) (*Exec, error) {
	if strings.TrimSpace(command) == "" {
		return nil, errNoCommand
	}
	if timeout < 0 {
		return nil, fmt.Errorf("exec-timeout: %s must be 0 (default %s) or more", timeout, DefaultExecTimeout)
	}
	if timeout == 0 {
		timeout = DefaultExecTimeout
	}
	return &Exec{command: command, timeout: timeout}, nil
}

func (*Exec) Name() string { return "exec" }

// Process returns {"output": stdout, "lines": lines fed, "command": the command}. Input the
// program does not read is still read (and counted) after it exits.
//
// Its errors: the input's own error when reading the object failed; ctx's error when ctx ended;
// permanent (ErrPermanent) when the program exits 65 or prints more than MaxExecOutput bytes;
// retryable when it exits with another non-zero status, runs past the timeout, or exits 0 but
// leaves a process that still holds its stdout or stderr (the output may not be complete).
func (e *Exec) Process(ctx context.Context, o Object, r io.Reader) (Fields, error) {
	runCtx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, shell[0], append(shell[1:len(shell):len(shell)], e.command)...)
	cmd.Env = append(os.Environ(), "PALLETO_BUCKET="+o.Bucket, "PALLETO_KEY="+o.Key,
		"PALLETO_VERSION_ID="+o.VersionID, "PALLETO_ETAG="+o.ETag, "PALLETO_ENCODING="+o.Encoding)
	var lc LineCounter
	in := &errReader{r: io.TeeReader(r, &lc)}
	// Stdin, stdout and stderr are pipes of ours, fed and read by goroutines of ours, not by
	// os/exec's: Process must not return while anything still reads r (its buffers go back to
	// pools), and stdout is read under the cap, which a writer given to os/exec would not see
	// (its io.Copy takes a promoted ReadFrom).
	p, err := openPipes()
	if err != nil {
		return nil, fmt.Errorf("exec %q: %w", e.command, err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = p.childIn, p.childOut, p.childErr
	cmd.WaitDelay = execWaitDelay
	var canceled atomic.Bool // the deadline or ctx ended the run (os/exec called Cancel)
	ownGroup(cmd, func() { canceled.Store(true) })
	unpin := pinThread()
	runErr := cmd.Start()
	p.closeChildEnds()
	if runErr != nil {
		unpin()
		p.abandon()
		return nil, fmt.Errorf("exec %q: %w", e.command, runErr)
	}
	pid := cmd.Process.Pid
	started(pid)
	defer exited(pid)
	p.serve(in, MaxExecOutput, func() { killGroup(pid) })
	runErr = cmd.Wait() // the shell exited (or was killed); its children may still run
	unpin()
	left := groupAlive(pid)
	held := left && !p.wait(execOutputGrace)
	if left {
		killGroup(pid)
	}
	escaped := !p.wait(execWaitDelay)
	p.finish()
	switch {
	case in.err != nil: // the input failed (limit, corrupt data, S3): that is the error, not the program's reaction
		return nil, in.err
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case p.over:
		return nil, fmt.Errorf("exec %q: %w: the program printed more than %d bytes to stdout (the most the exec processor keeps); killed it", e.command, ErrPermanent, MaxExecOutput)
	case canceled.Load() && runCtx.Err() != nil:
		return nil, fmt.Errorf("exec %q: still running after --exec-timeout %s; killed its process group%s", e.command, e.timeout, describe(p.errTail))
	case runErr != nil:
		err := fmt.Errorf("exec %q: %v%s", e.command, runErr, describe(p.errTail))
		var exit *exec.ExitError
		if errors.As(runErr, &exit) && exit.ExitCode() == ExitDataErr {
			err = fmt.Errorf("%w: %w", ErrPermanent, err)
		}
		return nil, err
	case escaped:
		return nil, fmt.Errorf("exec %q: exited 0, but a process outside its process group (setsid?) still held its stdout or stderr %s later, so its output may be incomplete", e.command, execWaitDelay)
	case held:
		return nil, fmt.Errorf("exec %q: exited 0, but left a child process that still held its stdout or stderr %s later (a background job, `cmd &`, inheriting them?), so its output may be incomplete; killed its process group", e.command, execOutputGrace)
	}
	if _, err := io.Copy(io.Discard, in); err != nil { // what the program left unread
		return nil, err
	}
	var output any = string(p.out)
	if trimmed := bytes.TrimSpace(p.out); len(trimmed) > 0 && json.Valid(trimmed) {
		output = json.RawMessage(trimmed)
	}
	return Fields{"output": output, "lines": lc.Lines(), "command": e.command}, nil
}

// errReader remembers the first error other than io.EOF.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// describe is "; stderr: " and the end of what the program wrote to stderr, or "".
func describe(stderr []byte) string {
	s := strings.TrimSpace(string(stderr))
	if s == "" {
		return ""
	}
	return "; stderr: " + s
}
