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
	"time"
)

// DefaultExecTimeout bounds one run of the exec processor when no timeout is given.
const DefaultExecTimeout = 10 * time.Minute

// MaxExecOutput is the most stdout the exec processor keeps; a program writing more fails.
const MaxExecOutput = 16 << 20

// ExitDataErr is the exit status (sysexits EX_DATAERR) by which a program says the object itself
// is bad: the failure is permanent. Any other non-zero status is retryable.
const ExitDataErr = 65

var errNoCommand = errors.New("exec: a command is required (--exec 'COMMAND')")

// Exec runs a program for each object: /bin/sh -c COMMAND with the decompressed content on its
// stdin, and PALLETO_BUCKET, PALLETO_KEY, PALLETO_VERSION_ID, PALLETO_ETAG and PALLETO_ENCODING
// in its environment. Its stdout is the result (as JSON when it is JSON, else as a string).
// A non-zero exit or running past the timeout is a failure.
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
func (e *Exec) Process(ctx context.Context, o Object, r io.Reader) (Fields, error) {
	runCtx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, "/bin/sh", "-c", e.command)
	cmd.Env = append(os.Environ(), "PALLETO_BUCKET="+o.Bucket, "PALLETO_KEY="+o.Key,
		"PALLETO_VERSION_ID="+o.VersionID, "PALLETO_ETAG="+o.ETag, "PALLETO_ENCODING="+o.Encoding)
	var lc LineCounter
	in := &errReader{r: io.TeeReader(r, &lc)}
	stdout := &capWriter{max: MaxExecOutput}
	stderr := &capWriter{max: 4 << 10, tail: true}
	// Stdin is a pipe fed by a goroutine of ours, not by os/exec's: Process must not return
	// while anything still reads r (its buffers go back to pools), and os/exec may give up on
	// its copier after WaitDelay.
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("exec %q: %w", e.command, err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pr, stdout, stderr
	cmd.WaitDelay = 5 * time.Second // after a kill, stop waiting for pipes held by grandchildren
	killGroup(cmd)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.Copy(pw, in) // ends at the input's end or error (in.err), or EPIPE once pr is closed
		pw.Close()
	}()
	runErr := cmd.Start()
	if runErr == nil {
		started(cmd.Process.Pid)
		runErr = cmd.Wait()
		exited(cmd.Process.Pid)
	}
	pr.Close() // a program that stopped reading: the copier's next write fails and it returns
	<-copied
	switch {
	case in.err != nil: // the input failed (limit, corrupt data, S3): that is the error, not the program's reaction
		return nil, in.err
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case runCtx.Err() != nil:
		return nil, fmt.Errorf("exec %q: still running after --exec-timeout %s; killed", e.command, e.timeout)
	case runErr != nil:
		err := fmt.Errorf("exec %q: %v%s", e.command, runErr, stderr.describe())
		var exit *exec.ExitError
		if errors.As(runErr, &exit) && exit.ExitCode() == ExitDataErr {
			err = fmt.Errorf("%w: %w", ErrPermanent, err)
		}
		return nil, err
	case stdout.over:
		return nil, fmt.Errorf("exec %q: %w: wrote more than %d bytes to stdout", e.command, ErrPermanent, MaxExecOutput)
	}
	if _, err := io.Copy(io.Discard, in); err != nil { // what the program left unread
		return nil, err
	}
	var output any = stdout.String()
	if trimmed := bytes.TrimSpace(stdout.Bytes()); len(trimmed) > 0 && json.Valid(trimmed) {
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

// capWriter keeps at most max bytes: the first ones, or with tail the last ones. It never fails,
// so the program is never blocked or killed by a full pipe.
type capWriter struct {
	bytes.Buffer
	max  int
	tail bool
	over bool
}

func (c *capWriter) Write(p []byte) (int, error) {
	n := len(p)
	if c.tail {
		c.Buffer.Write(p)
		if extra := c.Len() - c.max; extra > 0 {
			c.Next(extra)
		}
		return n, nil
	}
	if room := c.max - c.Len(); len(p) > room {
		p, c.over = p[:max(room, 0)], true
	}
	c.Buffer.Write(p)
	return n, nil
}

func (c *capWriter) describe() string {
	s := strings.TrimSpace(c.String())
	if s == "" {
		return ""
	}
	return "; stderr: " + s
}
