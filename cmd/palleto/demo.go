package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/palleto/palleto"
	"github.com/palleto/palleto/devstack"
	"github.com/palleto/palleto/queue"
	"golang.org/x/sync/errgroup"
)

// useStack points this process's AWS SDK configuration at the embedded stack, so that palleto
// reaches it through exactly the code path it uses against AWS.
func useStack(st *devstack.Stack) {
	for _, kv := range st.Env() {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	os.Unsetenv("AWS_PROFILE")
	os.Unsetenv("AWS_ENDPOINT_URL")
	os.Setenv("AWS_CONFIG_FILE", os.DevNull)
	os.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("palleto demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	objects := fs.Int("objects", 20, "how many sample gzip log files to upload")
	out := fs.String("out", filepath.Join(os.TempDir(), "palleto-demo"), "directory for the results")
	workers := fs.Int("workers", 4, "download/process workers")
	trace := fs.Bool("trace", false, "print the demand flow in words, like the original GenStage demo")
	source := fs.String("source", "sqs", "where the notifications go: sqs (the embedded SQS) or nats (a nats-server with JetStream, started from the PATH)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: palleto demo [--objects N] [--out DIR] [--trace] [--source nats]

Runs the whole job with no AWS account: starts an embedded S3 and SQS on 127.0.0.1 (for
development only), uploads N generated gzip log files (packrat/data/20160721.gz, ...), whose
ObjectCreated notifications reach the queue as S3 would send them, and runs the real pipeline
against them through the AWS SDK, as palleto run does. Prints progress and a summary.
`)
		printFlags(fs, fs.Output())
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *objects < 1 || *objects > 100000 {
		return usageError{fmt.Errorf("objects: %d is out of range [1, 100000]", *objects)}
	}
	scfg := devstack.DefaultConfig()
	natsSource := ""
	switch *source {
	case "sqs":
	case "nats":
		src, notify, stopNATS, err := natsDemo(ctx, stderr)
		if err != nil {
			return err
		}
		defer stopNATS()
		natsSource, scfg.Notify = src, notify
	default:
		return usageError{fmt.Errorf("source: %q is not one of sqs, nats", *source)}
	}
	st, err := devstack.Start(scfg)
	if err != nil {
		return err
	}
	defer st.Close()
	useStack(st)
	if natsSource != "" {
		fmt.Fprintf(stderr, "demo: embedded S3 at %s (development only), NATS JetStream at %s\n", st.S3Endpoint, queue.Redact(natsSource))
	} else {
		fmt.Fprintf(stderr, "demo: embedded S3 at %s, SQS at %s (development only)\n", st.S3Endpoint, st.SQSEndpoint)
	}
	if err := prepareDemoOut(*out); err != nil {
		return err
	}

	cfg := palleto.DefaultConfig()
	cfg.SQS.QueueURL = st.QueueURL
	if natsSource != "" {
		cfg.Source, cfg.SQS.QueueURL = natsSource, ""
	}
	cfg.SQS.WaitTime = time.Second
	cfg.OutDir = *out
	cfg.Engine.Workers = *workers
	cfg.Engine.ExitWhenIdle = 3 * time.Second
	excerpt := &flowExcerpt{max: 14}
	cfg.Trace = excerpt
	if *trace {
		cfg.Trace = io.MultiWriter(stdout, excerpt)
	}
	log, _ := newLogger(io.Discard, "error", "text")
	if os.Getenv("PALLETO_DEMO_LOG") != "" {
		log, _ = newLogger(stderr, "info", "text")
	}
	d, s3c, err := newDaemon(ctx, cfg, palleto.ClientOptions{}, log, nil)
	if err != nil {
		return err
	}

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	var wg sync.WaitGroup
	var summary palleto.Summary
	var runErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		summary, runErr = d.Run(runCtx)
	}()

	// Upload while the pipeline runs: each object is processed the moment it lands.
	var uploaded, plainBytes, wantLines int64
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i := 0; i < *objects; i++ {
		g.Go(func() error {
			key, gz, pb, lines := devstack.SampleObject(i)
			if _, err := s3c.PutObject(gctx, &s3.PutObjectInput{Bucket: &st.Bucket, Key: &key, Body: bytes.NewReader(gz)}); err != nil {
				return fmt.Errorf("upload %s: %w", key, err)
			}
			mu.Lock()
			uploaded++
			plainBytes += int64(pb)
			wantLines += int64(lines)
			mu.Unlock()
			return nil
		})
	}
	uploadErr := make(chan error, 1)
	go func() { uploadErr <- g.Wait() }()

	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	uploadsDone := false
	for {
		s := d.Stats()
		done := s.Objects + s.AlreadyDone + s.Failed
		if uploadsDone && done >= int64(*objects) {
			stopRun()
			break
		}
		select {
		case err := <-uploadErr:
			if err != nil {
				stopRun()
				wg.Wait()
				return err
			}
			uploadsDone = true
			continue
		case <-ctx.Done():
			stopRun()
		case <-tick.C:
			mu.Lock()
			up := uploaded
			mu.Unlock()
			fmt.Fprintf(stderr, "demo: %d/%d uploaded, %d processed, %d lines, %s, %d in flight\n",
				up, *objects, done, s.Lines, rate(s.Bytes, time.Since(start)), d.InFlight())
			continue
		}
		break
	}
	wg.Wait()
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	if ctx.Err() != nil {
		return nil
	}
	secs := summary.Elapsed.Seconds()
	if !*trace {
		fmt.Fprintf(stdout, "\nHow the demand flowed (the first steps; --trace prints them all):\n%s", excerpt)
	}
	fmt.Fprintf(stdout, `
Palleto demo: done.
  objects:    %d processed, %d failed (uploaded %s to s3://%s)
  lines:      %d (expected %d)
  bytes:      %s decompressed from %s of gzip
  throughput: %.1f objects/s, %s over %s
  messages:   %d deleted from the queue
  results:    %s (one JSON file per object, e.g. %s)
`, summary.Objects, summary.Failed, count(uploaded, "gzip file"), st.Bucket, summary.Lines, wantLines,
		size(summary.Bytes), size(summary.Fetched),
		float64(summary.Objects)/secs, rate(summary.Bytes, summary.Elapsed), summary.Elapsed.Round(time.Millisecond),
		summary.Deleted, *out, filepath.Join(*out, st.Bucket, "packrat", "data", "20160721.gz.json"))
	if summary.Objects != int64(*objects) || summary.Lines != wantLines {
		return fmt.Errorf("demo: %d of %d objects and %d of %d lines processed", summary.Objects, *objects, summary.Lines, wantLines)
	}
	return nil
}

// demoMarker marks a directory as a demo's output: the next demo may clear what it wrote there.
const demoMarker = ".palleto-demo"

// prepareDemoOut makes out ready for a demo without deleting anything Palleto did not write: a
// missing or empty directory is used (and marked); a previous demo's output has its results
// cleared; any other directory is refused.
func prepareDemoOut(out string) error {
	entries, err := os.ReadDir(out)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(out, 0o755); err != nil {
			return fmt.Errorf("out: %w", err)
		}
	case err != nil:
		return usageError{fmt.Errorf("out: %v", err)}
	case len(entries) > 0:
		if _, err := os.Stat(filepath.Join(out, demoMarker)); err != nil {
			return usageError{fmt.Errorf("out: %s is not empty and is not a previous demo's output; palleto demo writes only to a new or empty directory (or its own earlier output), so choose another --out", out)}
		}
		for _, dir := range []string{"uploads", "_failed", "_copy"} { // what a demo writes, and nothing else
			if err := os.RemoveAll(filepath.Join(out, dir)); err != nil {
				return fmt.Errorf("out: clearing the previous demo's %s: %w", dir, err)
			}
		}
	}
	return os.WriteFile(filepath.Join(out, demoMarker), []byte("results of palleto demo; the next demo clears uploads/ and _failed/ here\n"), 0o644)
}

// flowExcerpt keeps the first lines of the trace that show the demand model at work: what the
// workers asked for, the polls that went out and what they brought, partial batches included.
type flowExcerpt struct {
	mu    sync.Mutex
	lines []string
	max   int
	seen  map[string]int
}

func (f *flowExcerpt) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen == nil {
		f.seen = map[string]int{}
	}
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		_, msg, _ := strings.Cut(line, " ") // without the time
		kind := ""
		switch {
		case strings.Contains(msg, "prefetch asks"):
			kind = "prefetch"
		case strings.Contains(msg, "asking for"):
			kind = "poll"
		case strings.Contains(msg, "received"):
			kind = "received"
		case strings.Contains(msg, "demand +"):
			kind = "demand"
		case strings.Contains(msg, "processed"):
			kind = "processed"
		case strings.Contains(msg, "deleted"):
			kind = "deleted"
		default:
			continue
		}
		if len(f.lines) < f.max && f.seen[kind] < 3 {
			f.seen[kind]++
			f.lines = append(f.lines, "  "+msg)
		}
	}
	return len(p), nil
}

func (f *flowExcerpt) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.lines, "\n") + "\n"
}
