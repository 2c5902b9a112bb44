package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/palleto/palleto/queue"
)

// errNoNATSServer is `palleto demo --source nats` without a nats-server to start: one line.
var errNoNATSServer = errors.New("--source nats needs nats-server on the PATH (Debian: apt-get install nats-server; or: go install github.com/nats-io/nats-server/v2@latest)")

// natsDemo starts, for `palleto demo --source nats`, a nats-server with JetStream from the PATH
// on a free port of 127.0.0.1, its store in a temporary directory. It returns the source URL the
// demo consumes, the embedded S3's notifier (it publishes each notification to the stream's
// subject, as MinIO's NATS target does), and the function that stops it all.
func natsDemo(ctx context.Context, stderr io.Writer) (source string, notify func(string), stop func(), err error) {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nats-server"); serr != nil { // Debian's package puts it there
			return "", nil, nil, errNoNATSServer
		}
		bin = "/usr/sbin/nats-server"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir, err := os.MkdirTemp("", "palleto-demo-nats-")
	if err != nil {
		return "", nil, nil, err
	}
	cmd := exec.Command(bin, "-js", "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-sd", dir)
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return "", nil, nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	stopServer := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		os.RemoveAll(dir)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			stopServer()
			return "", nil, nil, fmt.Errorf("%s did not come up on 127.0.0.1:%d: %v", bin, port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	source = fmt.Sprintf("nats://127.0.0.1:%d/DEMO/palleto?subject=palleto.demo", port)
	log, _ := newLogger(io.Discard, "error", "text")
	pub, err := queue.OpenPublisher(ctx, source, queue.Options{Logger: log, CallTimeout: 10 * time.Second})
	if err != nil {
		stopServer()
		return "", nil, nil, err
	}
	notify = func(body string) {
		if err := pub.Publish(context.Background(), []string{body}); err != nil {
			fmt.Fprintf(stderr, "demo: a notification was not published to NATS: %v\n", err)
		}
	}
	return source, notify, func() { pub.Close(); stopServer() }, nil
}
