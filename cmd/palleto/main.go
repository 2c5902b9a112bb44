// Command palleto consumes S3 ObjectCreated notifications from an SQS queue and processes each
// object as it lands. See `palleto help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	_ "github.com/palleto/palleto/amqp" // the RabbitMQ source: --source amqp://USER:PASS@HOST:5672/VHOST?queue=Q
	"github.com/palleto/palleto/process"
)

// Exit codes.
const (
	exitOK    = 0
	exitFatal = 1
	exitUsage = 2
)

// usageError marks errors in what the user asked for: exit code 2.
type usageError struct{ error }

const mainUsage = `palleto: process every file the moment it lands in S3.

S3 sends ObjectCreated notifications to an SQS queue (directly, through SNS or EventBridge);
palleto polls the queue for exactly as many messages as its workers can take, streams each
object from S3, decompresses it (gzip, zstd, bzip2 or plain), processes it (by default: counts
lines and bytes), writes one JSON result per object under --out, then deletes the message.

Usage:
  palleto run --queue-url URL --out DIR [flags]   consume a queue (see palleto run --help)
  palleto run --source URL --out DIR [flags]      consume SQS, NATS JetStream or a webhook (see palleto run --help)
  palleto backfill --bucket B --queue-url URL     announce the objects already in a bucket (see palleto backfill --help)
  palleto demo [--objects N] [--out DIR]          the whole job on an embedded S3 and SQS
  palleto devstack                                run the embedded S3 and SQS for development
  palleto status [--addr HOST:PORT] [--json]      what a running daemon is doing (its --metrics-addr)
  palleto version

AWS settings come the standard way: credential chain, AWS_REGION, AWS_PROFILE, and
AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL_S3 for local or S3-compatible servers.
`

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, mainUsage)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Registered now, not once ctx is done: a second signal sent in between would be lost (the
	// first, which also cancels ctx, and the second are both buffered).
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)
	go func() {
		// A second signal exits at once; messages in flight come back by their visibility timeout.
		<-signals
		sig := <-signals
		// The exec processor's programs run in process groups of their own: kill them first,
		// or they outlive this process.
		n := process.KillAll()
		say(stderr, slog.LevelError, fmt.Sprintf("palleto: second signal (%v); exiting now (%d running programs killed; messages in flight come back after their visibility timeout)", sig, n),
			"signal", sig.String(), "programs_killed", n)
		os.Exit(exitFatal)
	}()
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(ctx, args[1:], stdout, stderr)
	case "demo":
		err = cmdDemo(ctx, args[1:], stdout, stderr)
	case "backfill":
		err = cmdBackfill(ctx, args[1:], stdout, stderr)
	case "devstack":
		err = cmdDevstack(ctx, args[1:], stdout, stderr)
	case "status":
		err = cmdStatus(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		err = cmdVersion(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, mainUsage)
	default:
		fmt.Fprintf(stderr, "palleto: unknown command %q\nRun 'palleto help' for the commands.\n", args[0])
		return exitUsage
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		if ue.error != nil && !errors.Is(ue.error, errHelp) {
			say(stderr, slog.LevelError, fmt.Sprintf("palleto %s: %v", args[0], ue.error), "exit_code", exitUsage)
			return exitUsage
		}
		return exitOK
	default:
		say(stderr, slog.LevelError, fmt.Sprintf("palleto %s: %v", args[0], err), "exit_code", exitFatal)
		return exitFatal
	}
}
