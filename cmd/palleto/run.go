package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/palleto/palleto"
	"github.com/palleto/palleto/metrics"
	"github.com/palleto/palleto/process"
	"github.com/palleto/palleto/queue"
	_ "github.com/palleto/palleto/sources" // every source registers its URL form
	"github.com/palleto/palleto/sqs"
	"github.com/palleto/palleto/webhook"
)

// sourceUsage is --source's help: every form a source URL takes.
const sourceUsage = `where the notifications come from, chosen by the URL's form:
  https://sqs.REGION.amazonaws.com/ACCOUNT/NAME
      SQS (as --queue-url); a local SQS too: the host of AWS_ENDPOINT_URL_SQS or
      AWS_ENDPOINT_URL, or any http(s) URL whose path is /ACCOUNT/NAME with a 12-digit account
  nats://HOST:PORT/STREAM/CONSUMER[?subject=S&dlq=SUBJECT&creds=FILE&token=T&tls=true]
      NATS JetStream: a durable pull consumer with explicit acks, shared by every replica;
      subject= creates the stream and consumer when missing; dlq= publishes dead letters
      there (body and reason headers); creds= a .creds file, token= a token, tls=true TLS
  http://127.0.0.1:PORT/PATH (https:// with --tls-cert and --tls-key)
      a webhook Palleto listens on (MinIO's or Ceph's webhook target); each POST is spooled
      to --spool before it is answered 200; one process`

var errHelp = flag.ErrHelp

// runFlags binds every knob of palleto.Config to a flag. Each flag can also come from the
// environment as PALLETO_<NAME> (dashes as underscores); a flag on the command line wins.
func runFlags(fs *flag.FlagSet, c *palleto.Config, logLevel, logFormat *string) {
	fs.StringVar(&c.Source, "source", c.Source, sourceUsage)
	fs.StringVar(&c.SQS.QueueURL, "queue-url", c.SQS.QueueURL, "SQS queue URL to consume (required unless --source): the SQS spelling of --source, taken as SQS's whatever its host")
	fs.StringVar(&c.OutDir, "out", c.OutDir, "where results go: a directory (one JSON file per object, failures under _failed/), sqlite:PATH, postgres://USER@HOST/DB, or s3://BUCKET/PREFIX")
	fs.IntVar(&c.Commit.Size, "commit-batch-size", c.Commit.Size, "sqlite: and postgres:// stores: the most results committed in one transaction")
	fs.DurationVar(&c.Commit.Timeout, "commit-batch-timeout", c.Commit.Timeout, "sqlite: and postgres:// stores: the longest a result waits for others to share its commit")
	fs.IntVar(&c.Engine.Workers, "workers", c.Engine.Workers, "download/process workers (objects handled at once)")
	fs.IntVar(&c.Engine.Producer.Pollers, "pollers", c.Engine.Producer.Pollers, "concurrent SQS ReceiveMessage calls (each asks for at most the unmet demand, <= 10)")
	fs.IntVar(&c.Engine.Prefetch, "prefetch", c.Engine.Prefetch, "messages received ahead of the workers, so one finishing need not wait a poll's round trip (kept invisible by the heartbeat; handed back at shutdown). 0: only what idle workers ask, best for big objects shared by many replicas")
	fs.DurationVar(&c.SQS.WaitTime, "wait-time", c.SQS.WaitTime, "SQS long-poll wait per receive (0s-20s)")
	fs.DurationVar(&c.SQS.VisibilityTimeout, "visibility-timeout", c.SQS.VisibilityTimeout, "visibility timeout asked for on receive; renewed every half of it while a message is worked on")
	fs.DurationVar(&c.Engine.ExitWhenIdle, "exit-when-idle", c.Engine.ExitWhenIdle, "exit once the queue has been empty this long with nothing in flight, waiting for a retry or waiting to commit (0: run until stopped): 0 when all is done, 1 when messages are left undone (a dependency still down); polls then wait at most 1s, so the exit comes within about a second of this")
	fs.DurationVar(&c.Engine.ShutdownTimeout, "shutdown-timeout", c.Engine.ShutdownTimeout, "on SIGINT/SIGTERM, how long in-flight objects may take to finish")
	fs.IntVar(&c.MaxReceives, "max-receives", c.MaxReceives, "poison guard: an object (or message) that failed this many times by its own fault (processor error, panic) fails permanently; failures of the world (S3, SQS, the store down) never count, nor does SQS's receive count (0: off)")
	fs.DurationVar(&c.RetryBackoff, "retry-backoff", c.RetryBackoff, "after an object's own retryable failure the message is hidden this long, doubled per failure of the object (max 15m); after a failure of the world, this long (max 1m)")
	fs.StringVar(&c.DLQURL, "dlq-url", c.DLQURL, "dead-letter queue for permanent failures (the body, with the error in message attributes); without it they are recorded and deleted")
	fs.StringVar(&c.Processor, "processor", c.Processor, "what to do with each object: "+strings.Join(process.Names(), ", "))
	fs.StringVar(&c.ProcessorOptions.Grep, "grep", c.ProcessorOptions.Grep, "regular expression of --processor grep (counts matching lines)")
	fs.StringVar(&c.ProcessorOptions.Exec, "exec", c.ProcessorOptions.Exec, "command of --processor exec, run by /bin/sh -c for each object: the decompressed content on stdin, stdout stored as the result (exit 65: the object is bad, permanent; more than 16 MiB of stdout: killed, permanent; other non-zero, or exiting 0 while a child it left still holds its stdout/stderr: retried). Each run has its own process group, killed whole when the run ends or palleto dies")
	fs.DurationVar(&c.ProcessorOptions.ExecTimeout, "exec-timeout", process.DefaultExecTimeout, "--processor exec: a run taking longer is killed and fails (retried)")
	fs.Var((*listFlag)(&c.Buckets), "bucket", "allowlist of buckets (repeat or comma-separate); events for others are refused and recorded")
	fs.Var((*listFlag)(&c.Include), "include", "only keys matching one of these globs ('*' does not cross '/'; repeat or comma-separate)")
	fs.Var((*listFlag)(&c.Exclude), "exclude", "skip keys matching one of these globs")
	fs.Var((*byteSize)(&c.MaxObjectBytes), "max-object-bytes", "objects larger than this (as stored) fail permanently (0: no limit; a number of bytes, or with a unit: 512MiB, 2GB)")
	fs.Var((*byteSize)(&c.MaxDecompressedBytes), "max-decompressed-bytes", "objects that decompress to more than this fail permanently: stops decompression bombs (0: no limit)")
	fs.Var((*byteSize)(&c.PartSize), "part-size", "objects larger than this are read as ranged GETs of up to this size, several at once (0: one stream per object)")
	fs.IntVar(&c.PartsInFlight, "parts-in-flight", c.PartsInFlight, "ranged GETs at once per big object, the one being read included; ranges are read ahead only once the decompressor waits for its stream")
	fs.Var((*byteSize)(&c.ReadAhead), "read-ahead", "memory for ranges read ahead of the decompressors, shared by all workers: a worker that cannot get any reads with fewer ranges ahead, never more memory")
	fs.Var((*byteSize)(&c.ZstdMaxWindow), "zstd-max-window", "largest zstd window a decoder may allocate, per object being decoded; frames asking for more (zstd --long) fail permanently. Memory of every decoder stays bounded by this, whatever the input")
	fs.DurationVar(&c.SQS.CallTimeout, "sqs-timeout", c.SQS.CallTimeout, "deadline of each SQS call (a receive gets --wait-time on top)")
	fs.DurationVar(&c.ConnectTimeout, "s3-connect-timeout", c.ConnectTimeout, "deadline of each TCP connect and TLS handshake to S3 and SQS")
	fs.DurationVar(&c.S3FirstByteTimeout, "s3-first-byte-timeout", c.S3FirstByteTimeout, "deadline of each S3 GET's answer; past it the GET counts as S3 unavailable")
	fs.DurationVar(&c.S3ReadTimeout, "s3-read-timeout", c.S3ReadTimeout, "an S3 body that sends nothing this long is abandoned and resumed with a Range GET")
	fs.DurationVar(&c.Engine.HardStopTimeout, "hard-stop-timeout", 10*time.Second, "after --shutdown-timeout, how long to wait for work that was cancelled before exiting anyway")
	webhookFlags(fs, c)
	fs.String("config", "", "YAML file of settings, keyed by these flag names (queue-url: ..., workers: 16); flags and PALLETO_* win over it")
	fs.StringVar(logLevel, "log-level", *logLevel, "debug, info, warn or error")
	fs.StringVar(logFormat, "log-format", *logFormat, "text or json (default: text on a terminal, json otherwise)")
}

// webhookFlags binds the settings of a webhook source (--source http://127.0.0.1:PORT/PATH).
func webhookFlags(fs *flag.FlagSet, c *palleto.Config) {
	fs.StringVar(&c.SourceOptions.Spool, "spool", webhook.DefaultSpool, "webhook source: the spool file (SQLite) every event is written to before it is answered 200; it belongs to one process")
	fs.IntVar(&c.SourceOptions.SpoolMaxMessages, "spool-max-messages", webhook.DefaultMaxMessages, "webhook source: past this many spooled messages, events are answered 503 with Retry-After (the sender keeps them)")
	fs.StringVar(&c.SourceOptions.TLSCert, "tls-cert", c.SourceOptions.TLSCert, "webhook source: certificate (PEM) to listen with, for an https:// --source")
	fs.StringVar(&c.SourceOptions.TLSKey, "tls-key", c.SourceOptions.TLSKey, "webhook source: private key (PEM) of --tls-cert")
	fs.StringVar(&c.SourceOptions.Token, "webhook-token", c.SourceOptions.Token, "webhook source: the bearer token every POST must bring (Authorization: Bearer T, or ?token=T); required to listen beyond loopback")
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log-level: %q is not one of debug, info, warn, error", level)
	}
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Value.Kind() == slog.KindDuration { // "1.5s", not 1500000000 nanoseconds
			a.Value = slog.StringValue(a.Value.Duration().String())
		}
		return a
	}}
	switch logFormatFor(format, w) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log-format: %q is not one of text, json", format)
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := palleto.DefaultConfig()
	logLevel, logFormat := "info", ""
	trace := false
	metricsAddr, progress := "", "auto"
	fs := flag.NewFlagSet("palleto run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runFlags(fs, &cfg, &logLevel, &logFormat)
	fs.BoolVar(&trace, "trace", false, "print the demand flow in words: demand asked, polls, events received, downloaded/processed by pipeline K, deleted")
	fs.StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus /metrics, /healthz, /readyz and the status page (/ and /status.json; palleto status) on this address (e.g. :9090; empty: off)")
	fs.StringVar(&progress, "progress", progress, "live progress line on stderr: auto (when stderr is a terminal), always, never")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: palleto run --queue-url URL --out DIR [flags]
       palleto run --source URL --out DIR [flags]

Consumes S3 ObjectCreated notifications from the queue. Each object is streamed from S3,
decompressed, processed, and its result written atomically to DIR/<bucket>/<key>.json; only then
is the message deleted. A failure of the object's own is recorded under DIR/_failed/ and retried
with backoff, or, when permanent (missing object, corrupt data, malformed notification, a
processor's rejection, --max-receives failures), recorded and deleted (or sent to --dlq-url). A
failure of the world (S3, SQS or the disk down, slow or full, 403, credentials) never deletes
and never counts: the message waits, and receiving pauses until the dependency is back.

Settings come from, in order of precedence: these flags, PALLETO_<FLAG> environment variables
(PALLETO_QUEUE_URL, PALLETO_WORKERS, ...), the YAML file of --config, the defaults.

Exit codes: 0 done (including a stop by SIGINT/SIGTERM), 1 fatal error (or, with --exit-when-idle,
messages left undone), 2 bad usage or config.
`)
		printGroupedDefaults(fs, fs.Output())
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// The log and the live progress line share stderr: a log line clears the progress line first.
	logOut := &progressOut{w: stderr}
	log, err := newLogger(logOut, logLevel, logFormatFor(logFormat, stderr))
	if err != nil {
		return usageError{err}
	}
	if logFormatFor(logFormat, stderr) == "json" {
		jsonLogger.Store(log) // for main's last line too: kept after run returns
		if progress == "auto" {
			progress = "never" // every line JSON: no live line among them unless asked for
		}
	}
	if trace {
		cfg.Trace = stdout
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	if _, err := process.New(cfg.Processor, cfg.ProcessorOptions); err != nil {
		return usageError{err}
	}
	showProgress, err := wantProgress(progress, stderr)
	if err != nil {
		return usageError{err}
	}
	var met *metrics.Metrics
	if metricsAddr != "" {
		met = metrics.New()
	}
	d, _, err := newDaemon(ctx, cfg, palleto.ClientOptions{ConnectTimeout: cfg.ConnectTimeout}, log, met)
	if err != nil {
		return err
	}
	if err := checkAtStart(ctx, d); err != nil {
		return err
	}
	if metricsAddr != "" {
		stopStatus := d.StatusPage(version).Start(context.WithoutCancel(ctx)) // the page at / (package status)
		defer stopStatus()
		srvCtx, stopSrv := context.WithCancel(context.WithoutCancel(ctx))
		wait, err := metrics.Serve(srvCtx, metricsAddr, met.Handler(d.Ready), log)
		if err != nil {
			stopSrv()
			return err
		}
		defer func() { stopSrv(); wait() }() // served until the drain is over, not just until the signal
	}
	if showProgress {
		stopProgress := startProgress(d, logOut)
		defer stopProgress()
	}
	s, err := d.Run(ctx)
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	logOut.clear()
	printSummary(logOut, s)
	if cfg.Engine.ExitWhenIdle > 0 && s.Unrecorded > 0 {
		return fmt.Errorf("%d messages failed and their failure could not be recorded (the results store was unavailable); they are kept in the queue", s.Unrecorded)
	}
	if cfg.Engine.ExitWhenIdle > 0 && s.Undone > 0 {
		return fmt.Errorf("%d messages left undone in the queue (put back for a retry: S3 or the results store unavailable, or a failure of their own) when the run ended; run again to finish them", s.Undone)
	}
	return nil
}

// checkAtStart fails at start when the queue or the dead-letter queue cannot be used (a typo,
// no credentials, an endpoint that does not answer) or the results store cannot be written:
// a mistake in the setup should be an exit with its cause, not a daemon retrying forever. Once
// running, the same failures are waited out with a growing backoff.
func checkAtStart(ctx context.Context, d *palleto.Daemon) error {
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return d.Check(qctx)
}

// newDaemon builds the daemon on SDK clients from the standard AWS configuration, with an HTTP
// connection pool sized for the workers and pollers. It also returns the S3 client.
func newDaemon(ctx context.Context, cfg palleto.Config, co palleto.ClientOptions, log *slog.Logger, met *metrics.Metrics) (*palleto.Daemon, *s3.Client, error) {
	co.Conns, co.QueueURL, co.Logger = cfg.Engine.Workers+cfg.Engine.Producer.Pollers, cfg.SQS.QueueURL, log
	if name, _, _, err := queue.Lookup(cfg.Source); err == nil && name == sqs.Name {
		co.QueueURL = cfg.Source // the SQS client calls a local SQS's host, as for --queue-url
	}
	sqsc, s3c, err := palleto.AWSClientsWith(ctx, co)
	if err != nil {
		return nil, nil, err
	}
	d, err := palleto.New(cfg, palleto.Deps{SQS: sqsc, S3: s3c, Logger: log, Metrics: met})
	return d, s3c, err
}

func printSummary(w io.Writer, s palleto.Summary) {
	busy := s.Busy
	if busy <= 0 {
		busy = s.Elapsed
	}
	deferred := ""
	if s.Deferred > 0 {
		deferred = fmt.Sprintf(", %d deferred while S3 or the store was unavailable", s.Deferred)
	}
	if s.Undone > 0 {
		deferred += fmt.Sprintf("; %s left undone in the queue", count(s.Undone, "message"))
	}
	// Rates only over work done: with no object processed there is no busy time to speak of.
	rates := ""
	if s.Objects > 0 {
		rates = fmt.Sprintf(" (%s busy): %.1f objects/s, %s", busy.Round(time.Millisecond), float64(s.Objects)/max(busy.Seconds(), 1e-9), rate(s.Bytes, busy))
	}
	rss := peakRSS()
	say(w, slog.LevelInfo, fmt.Sprintf("palleto: %s processed (%d already done, %d failed%s), %s, %s decompressed from %s fetched in %s%s; %s deleted; peak RSS %.1f MiB; results in %s",
		count(s.Objects, "object"), s.AlreadyDone, s.Failed, deferred, count(s.Lines, "line"), size(s.Bytes), size(s.Fetched), s.Elapsed.Round(time.Millisecond),
		rates, count(s.Deleted, "message"), float64(rss)/(1<<20), s.OutDir),
		"objects", s.Objects, "already_done", s.AlreadyDone, "failed", s.Failed, "deferred", s.Deferred, "lines", s.Lines, "bytes", s.Bytes,
		"fetched", s.Fetched, "elapsed", s.Elapsed, "busy", s.Busy, "messages_deleted", s.Deleted, "peak_rss", rss, "out", s.OutDir)
}

// byteSize is an int64 flag of bytes that also takes a unit: 512KiB, 8MiB, 1GiB, 2GB, 10kB.
type byteSize int64

var units = []struct {
	suffix string
	mult   int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}

func (b *byteSize) String() string {
	for _, u := range units[:4] {
		if v := int64(*b); v != 0 && v%u.mult == 0 && v/u.mult < 1024 {
			return fmt.Sprintf("%d%s", v/u.mult, u.suffix)
		}
	}
	return strconv.FormatInt(int64(*b), 10)
}

func (b *byteSize) Set(s string) error {
	s = strings.TrimSpace(s)
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || n < 0 {
				return fmt.Errorf("%q is not a size (a number of bytes, or with a unit: 512KiB, 8MiB, 1GiB)", s)
			}
			*b = byteSize(n * float64(u.mult))
			return nil
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not a size (a number of bytes, or with a unit: 512KiB, 8MiB, 1GiB)", s)
	}
	*b = byteSize(n)
	return nil
}

// listFlag is a repeatable, comma-separated string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}
