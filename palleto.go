// Package palleto wires the pieces into the daemon: the engine (demand, workers) pulls messages
// from the SQS source; each message is parsed (notify), each object streamed from S3 (fetch),
// decompressed (decode), processed (process) and its result written durably (sink); only then is
// the message deleted (sqs). Embed it with New and Run, or run cmd/palleto.
//
// Where things happen: a message is received in sqs.Source.Receive, handled in handle.go,
// settled (deleted, retried, recorded) in settle.go, deleted in sqs.Source.runDeleter, and a
// byte is decompressed in decode.NewReader.
package palleto

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/palleto/palleto/engine"
	"github.com/palleto/palleto/fetch"
	"github.com/palleto/palleto/metrics"
	"github.com/palleto/palleto/process"
	"github.com/palleto/palleto/sink"
	"github.com/palleto/palleto/sqs"
)

// Config is everything `palleto run` can be told.
type Config struct {
	Engine engine.Config
	SQS    sqs.Config
	// OutDir is where results go.
	OutDir string
	// Processor is the registered processor's name (default "lines"); ignored when New is given
	// a Processor in Deps.
	Processor string
	// MaxReceives promotes any failure to permanent once a message has been received this many
	// times (the poison guard). 0 turns the guard off.
	MaxReceives int
	// RetryBackoff is the visibility delay after a retryable failure on first receipt; it doubles
	// with each further receipt, up to 15 minutes.
	RetryBackoff time.Duration
	// DLQURL, when set, receives the original body of permanently failed messages, with the
	// error in message attributes, before they are deleted.
	DLQURL string
	// Trace, when set, is told the flow in words.
	Trace io.Writer
	// ProcessorOptions configure the named processor (the grep pattern).
	ProcessorOptions process.Options
	// Buckets, when not empty, is the allowlist: an event naming another bucket is refused and
	// recorded (a forged notification must not make Palleto read another bucket).
	Buckets []string
	// Include and Exclude are key globs (path.Match: '*' does not cross '/'). A key must match
	// an Include pattern (when there are any) and no Exclude pattern, or it is skipped.
	Include, Exclude []string
	// MaxObjectBytes and MaxDecompressedBytes stop objects that are larger (0: no limit); such an
	// object fails permanently, and memory stays flat whatever its size.
	MaxObjectBytes, MaxDecompressedBytes int64
}

// DefaultConfig returns the defaults of `palleto run`.
func DefaultConfig() Config {
	e := engine.DefaultConfig()
	// docs/PERFORMANCE.md (P2) measured more pollers and prefetch, with full polls, feeding small
	// objects faster; they are not the defaults until a SIGTERM-test failure seen with them is
	// understood.
	e.Producer.Pollers = 2
	e.Prefetch = 10
	return Config{Engine: e, SQS: sqs.DefaultConfig(), OutDir: "out", Processor: "lines", MaxReceives: 5, RetryBackoff: 10 * time.Second}
}

// Validate names the first bad setting, its value and its bound.
func (c Config) Validate() error {
	if err := c.Engine.Validate(); err != nil {
		return err
	}
	if err := c.SQS.Validate(); err != nil {
		return err
	}
	if c.OutDir == "" {
		return fmt.Errorf("out: required (the directory results are written to)")
	}
	if c.MaxReceives < 0 {
		return fmt.Errorf("max-receives: %d must be 0 (off) or more", c.MaxReceives)
	}
	for name, globs := range map[string][]string{"include": c.Include, "exclude": c.Exclude} {
		for _, g := range globs {
			if _, err := path.Match(g, ""); err != nil {
				return fmt.Errorf("%s: %q is not a glob (path.Match syntax: *, ?, [a-z], \\x): %v", name, g, err)
			}
		}
	}
	if c.MaxObjectBytes < 0 {
		return fmt.Errorf("max-object-bytes: %d must be 0 (no limit) or more", c.MaxObjectBytes)
	}
	if c.MaxDecompressedBytes < 0 {
		return fmt.Errorf("max-decompressed-bytes: %d must be 0 (no limit) or more", c.MaxDecompressedBytes)
	}
	if c.ProcessorOptions.ExecTimeout < 0 {
		return fmt.Errorf("exec-timeout: %s must be 0s (default %s) or more", c.ProcessorOptions.ExecTimeout, process.DefaultExecTimeout)
	}
	if c.RetryBackoff < 0 || c.RetryBackoff > 12*time.Hour {
		return fmt.Errorf("retry-backoff: %s is out of range [0s, 12h]", c.RetryBackoff)
	}
	return nil
}

// Deps are the daemon's connections. SQS and S3 are required.
type Deps struct {
	SQS       sqs.API
	S3        fetch.API
	Processor process.Processor // default: the one Config.Processor names
	Logger    *slog.Logger
	Metrics   *metrics.Metrics // nil: no metrics
}

// Summary counts what a run did.
type Summary struct {
	Messages    int64 // messages handled
	Deleted     int64 // messages deleted
	Objects     int64 // objects processed successfully
	AlreadyDone int64 // objects skipped: an identical result existed
	Failed      int64 // object or message failures recorded
	Skipped     int64 // non-ObjectCreated records and test events
	Bytes       int64 // decompressed bytes processed
	Fetched     int64 // bytes fetched from S3
	Lines       int64
	Elapsed     time.Duration
	OutDir      string
}

// Daemon is a configured Palleto. Create it with New; Run it once.
type Daemon struct {
	cfg   Config
	log   *slog.Logger
	src   *sqs.Source
	fetch *fetch.Fetcher
	sink  *sink.Disk
	proc  process.Processor
	pl    *engine.Pipeline[*sqs.Message]
	deps  Deps
	met   *metrics.Metrics

	traceMu sync.Mutex
	stats   struct{ messages, deleted, objects, already, failed, skipped, bytes, fetched, lines atomic.Int64 }
	testLog sync.Once
}

// New checks cfg, opens the output directory and prepares the pipeline.
func New(cfg Config, deps Deps) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: deps.Logger, deps: deps, proc: deps.Processor, met: deps.Metrics}
	if d.log == nil {
		d.log = slog.Default()
	}
	disk, err := sink.Open(cfg.OutDir)
	if err != nil {
		return nil, err
	}
	d.sink = disk
	if d.proc == nil {
		opts := cfg.ProcessorOptions
		opts.Store, opts.CopyPath = disk, sink.CopyPath
		p, err := process.New(cfg.Processor, opts)
		if err != nil {
			disk.Close()
			return nil, err
		}
		d.proc = p
	}
	d.fetch = fetch.New(deps.S3)
	d.fetch.OnResume = func(bucket, key string, off int64, cause error) {
		d.met.Resumed()
		d.tracef("s3: s3://%s/%s broke at byte %d (%v); resuming with a Range request", bucket, key, off, cause)
		d.log.Warn("S3 body broken; resuming with a Range request", "bucket", bucket, "key", key, "offset", off, "error", cause)
	}
	d.src = sqs.New(deps.SQS, cfg.SQS, d.log, sqs.Hooks{
		Trace:    d.tracef,
		Deleted:  func(n int) { d.stats.deleted.Add(int64(n)); d.met.Deleted(n) },
		Extended: d.met.Extended,
	})
	ec := cfg.Engine
	ec.Logger = d.log
	user := ec.Producer.OnReceive
	ec.Producer.OnReceive = func(p engine.PollDone) {
		d.met.Received(p.Items, p.Err)
		if p.Err != nil && !errors.Is(p.Err, context.Canceled) {
			// Messages SQS handed to a call that failed on our side come back only after their
			// visibility timeout: worth a line in the log.
			d.log.Warn("SQS receive failed; polling again after a backoff", "error", p.Err)
		}
		if user != nil {
			user(p)
		}
	}
	if cfg.Trace != nil {
		ec.Producer.Trace = d.tracef
	}
	d.pl = engine.New[*sqs.Message](d.src, ec, engine.Handler[*sqs.Message]{
		Handle:  d.handle,
		Settle:  d.settle,
		Release: d.release,
	})
	d.met.SetDemand(d.pl.Demand)
	return d, nil
}

func (d *Daemon) tracef(format string, args ...any) {
	if d.cfg.Trace == nil {
		return
	}
	d.traceMu.Lock()
	defer d.traceMu.Unlock()
	fmt.Fprintf(d.cfg.Trace, "%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// Stats returns the counts so far; safe to call while Run runs.
func (d *Daemon) Stats() Summary {
	return Summary{
		Messages: d.stats.messages.Load(), Deleted: d.stats.deleted.Load(), Objects: d.stats.objects.Load(),
		AlreadyDone: d.stats.already.Load(), Failed: d.stats.failed.Load(), Skipped: d.stats.skipped.Load(),
		Bytes: d.stats.bytes.Load(), Fetched: d.stats.fetched.Load(), Lines: d.stats.lines.Load(), OutDir: d.cfg.OutDir,
	}
}

// InFlight is the number of messages being handled now.
func (d *Daemon) InFlight() int { return d.pl.InFlight() }

// QueueDepth returns the queue's approximate visible and in-flight message counts.
func (d *Daemon) QueueDepth(ctx context.Context) (visible, inFlight int, err error) {
	return d.src.Depth(ctx)
}

// Ready reports why the daemon cannot work, or nil: the queue must answer and the output
// directory must take a write. It is what /readyz serves.
func (d *Daemon) Ready(ctx context.Context) error {
	if _, _, err := d.src.Depth(ctx); err != nil {
		return err
	}
	return d.sink.CheckWritable()
}

// Run consumes the queue until ctx is done (or, with ExitWhenIdle, until the queue stays empty),
// then drains: in-flight messages finish within the shutdown timeout, unstarted ones are handed
// back, pending deletes are flushed. A stop by ctx is not an error.
func (d *Daemon) Run(ctx context.Context) (Summary, error) {
	start := time.Now()
	d.log.Info("palleto started", "queue_url", d.cfg.SQS.QueueURL, "out", d.cfg.OutDir, "workers", d.cfg.Engine.Workers,
		"pollers", d.cfg.Engine.Producer.Pollers, "processor", d.proc.Name(), "visibility_timeout", d.cfg.SQS.VisibilityTimeout)
	d.pl.Run(ctx)
	d.src.Close()
	d.sink.Close()
	s := d.Stats()
	s.Elapsed = time.Since(start)
	d.log.Info("palleto stopped", "objects", s.Objects, "already_done", s.AlreadyDone, "failed", s.Failed,
		"messages_deleted", s.Deleted, "bytes", s.Bytes, "elapsed", s.Elapsed.Round(time.Millisecond))
	return s, nil
}
