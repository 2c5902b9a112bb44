// Package palleto wires the pieces into the daemon: the engine (demand, workers) pulls messages
// from a queue.Source (SQS); each message is parsed (notify), each object streamed from S3
// (fetch), decompressed (decode), processed (process) and its result stored (store, chosen by
// the form of --out: store.Open); only then is the message deleted. Embed it with New and
// Run, or run cmd/palleto.
//
// Where things happen: a message is received in sqs.Source.Receive, handled in handle.go,
// settled (deleted, retried, recorded) in settle.go, deleted in sqs.Source.runDeleter, and a
// byte is decompressed in decode.Open. What a failure means is decided in classify (handle.go).
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

	"github.com/palleto/palleto/breaker"
	"github.com/palleto/palleto/decode"
	"github.com/palleto/palleto/engine"
	"github.com/palleto/palleto/fetch"
	"github.com/palleto/palleto/metrics"
	"github.com/palleto/palleto/process"
	"github.com/palleto/palleto/queue"
	"github.com/palleto/palleto/sqs"
	"github.com/palleto/palleto/store"
)

// Config is everything `palleto run` can be told.
type Config struct {
	Engine engine.Config
	SQS    sqs.Config
	// Source, when set, is the URL of the source to consume (--source: sqs, nats://, kafka://,
	// amqp://, a webhook's http://127.0.0.1:PORT/PATH; see queue.Open); when empty, the SQS queue
	// of SQS.QueueURL (--queue-url, the SQS spelling of the same thing).
	Source string
	// SourceOptions are the source settings of the command line (--spool, --tls-cert, ...); the
	// daemon fills in the rest of queue.Options (logger, timeouts, demand) when it opens it.
	SourceOptions queue.Options
	// OutDir is where results go (--out): a directory, sqlite:PATH, postgres://..., or
	// s3://BUCKET/PREFIX (see OpenStore).
	OutDir string
	// Commit groups the results of the database stores: up to Size results, or Timeout, per
	// transaction.
	Commit store.GroupConfig
	// Processor is the registered processor's name (default "lines"); ignored when New is given
	// a Processor in Deps.
	Processor string
	// MaxReceives is the poison guard: an object (or a message) that has failed this many
	// times by its own fault (a processor error, a panic) fails permanently. Failures of the
	// world (S3, SQS or the store down, slow or refusing the credentials) never count. 0 turns
	// the guard off.
	MaxReceives int
	// RetryBackoff is the visibility delay after the first failure of an object's own; it
	// doubles with each further one, up to 15 minutes. After a failure of the world the delay
	// is RetryBackoff, at most a minute: the breaker, not the delay, keeps an outage quiet.
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
	// ZstdMaxWindow bounds the memory of a zstd decoder (0: decode.DefaultMaxWindow): a frame
	// asking for a larger window fails permanently.
	ZstdMaxWindow int64
	// S3FirstByteTimeout and S3ReadTimeout bound each S3 GET's wait for an answer and each read
	// of its body (0: the fetch package's defaults); a stalled body is resumed with a Range GET.
	S3FirstByteTimeout, S3ReadTimeout time.Duration
	// PartSize, PartsInFlight and ReadAhead read big objects in ranges: an object larger than
	// PartSize in up to PartsInFlight ranged GETs at once, those ahead of the decompressor held
	// in a budget of ReadAhead bytes shared by every worker (0 PartSize: one stream always).
	PartSize      int64
	PartsInFlight int
	ReadAhead     int64
	// ConnectTimeout bounds each TCP connect and TLS handshake of the AWS clients the command
	// builds (AWSClientsWith); New itself takes ready clients.
	ConnectTimeout time.Duration
}

// DefaultConfig returns the defaults of `palleto run`.
func DefaultConfig() Config {
	e := engine.DefaultConfig()
	// Small objects are done in a few milliseconds while one ReceiveMessage takes 10-20 ms: to
	// keep 8 workers fed, about 40 messages must be on their way and several full polls out at
	// once (docs/PERFORMANCE.md, P2). Big objects do not need it: --prefetch 0 suits them when
	// many replicas share the queue.
	e.Producer.Pollers = 4
	e.Prefetch = 40
	return Config{Engine: e, SQS: sqs.DefaultConfig(), OutDir: "out", Processor: "lines", MaxReceives: 5, RetryBackoff: 10 * time.Second,
		ZstdMaxWindow: decode.DefaultMaxWindow, S3FirstByteTimeout: fetch.DefaultFirstByteTimeout, S3ReadTimeout: fetch.DefaultReadTimeout,
		ConnectTimeout: 10 * time.Second, Commit: store.DefaultGroupConfig(),
		PartSize: 8 << 20, PartsInFlight: 8, ReadAhead: 64 << 20}
}

// Validate names the first bad setting, its value and its bound. An SQS queue URL is required
// unless Source names another source.
func (c Config) Validate() error {
	return c.validate(c.Source != "")
}

func (c Config) validate(haveSource bool) error {
	if err := c.Engine.Validate(); err != nil {
		return err
	}
	if err := c.validateSource(haveSource); err != nil {
		return err
	}
	if c.DLQURL != "" {
		if err := sqs.CheckQueueURL("dlq-url", c.DLQURL); err != nil {
			return err
		}
		if err := sqs.CheckDLQ(c.DLQURL, c.SQS.QueueURL); err != nil {
			return err
		}
	}
	if c.SQS.CallTimeout == 0 { // sqs.Config's 0 means its default; a daemon's setting of 0 is a mistake
		return fmt.Errorf("sqs-timeout: 0s is out of range [1s, 10m] (every SQS call needs a deadline; the default is %s)", sqs.DefaultCallTimeout)
	}
	if c.ProcessorOptions.Grep != "" && c.Processor != "grep" {
		return fmt.Errorf("grep: --grep is the pattern of --processor grep, but the processor is %q: add --processor grep or drop --grep", c.Processor)
	}
	if c.ProcessorOptions.Exec != "" && c.Processor != "exec" {
		return fmt.Errorf("exec: --exec is the command of --processor exec, but the processor is %q: add --processor exec or drop --exec", c.Processor)
	}
	drv, err := store.Lookup(c.OutDir)
	if err != nil {
		return err
	}
	if err := c.Commit.Validate(); err != nil {
		return err
	}
	if c.Processor == "copy" && !drv.Files {
		return fmt.Errorf("processor: copy writes the decompressed objects as files, which the %s store does not hold: use --out DIR (copies under DIR/_copy/) or --out s3://BUCKET/PREFIX (under PREFIX/_copy/)", drv.Name)
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
	if c.PartSize != 0 && (c.PartSize < 64<<10 || c.PartSize > 1<<30) {
		return fmt.Errorf("part-size: %d is out of range [64KiB, 1GiB] (0: one stream per object)", c.PartSize)
	}
	if c.PartsInFlight < 0 || c.PartsInFlight > 64 {
		return fmt.Errorf("parts-in-flight: %d is out of range [0, 64]", c.PartsInFlight)
	}
	if c.ReadAhead < 0 {
		return fmt.Errorf("read-ahead: %d must be 0 (none) or more", c.ReadAhead)
	}
	if c.ZstdMaxWindow != 0 && (c.ZstdMaxWindow < 1<<10 || c.ZstdMaxWindow > 2<<30) {
		return fmt.Errorf("zstd-max-window: %d is out of range [1KiB, 2GiB]", c.ZstdMaxWindow)
	}
	if c.ProcessorOptions.ExecTimeout < 0 {
		return fmt.Errorf("exec-timeout: %s must be 0s (default %s) or more", c.ProcessorOptions.ExecTimeout, process.DefaultExecTimeout)
	}
	if c.RetryBackoff < 0 || c.RetryBackoff > 12*time.Hour {
		return fmt.Errorf("retry-backoff: %s is out of range [0s, 12h]", c.RetryBackoff)
	}
	for name, d := range map[string]time.Duration{"s3-first-byte-timeout": c.S3FirstByteTimeout, "s3-read-timeout": c.S3ReadTimeout, "s3-connect-timeout": c.ConnectTimeout} {
		if d != 0 && (d < 100*time.Millisecond || d > time.Hour) {
			return fmt.Errorf("%s: %s is out of range [100ms, 1h]", name, d)
		}
	}
	return nil
}

// Deps are the daemon's connections. S3 is required, and SQS unless Source is given.
type Deps struct {
	SQS sqs.API
	S3  fetch.API
	// Source, when set, is where messages come from instead of the SQS queue of Config.SQS.
	Source queue.Source
	// Store, when set, is where results go instead of the directory Config.OutDir.
	Store     store.Store
	Processor process.Processor // default: the one Config.Processor names
	Logger    *slog.Logger
	Metrics   *metrics.Metrics // nil: no metrics
}

// Summary counts what a run did.
type Summary struct {
	Messages    int64         // messages settled
	Deleted     int64         // messages deleted
	Objects     int64         // objects processed successfully
	AlreadyDone int64         // objects skipped: an identical result existed (or a later event's)
	Failed      int64         // object or message failures recorded
	Deferred    int64         // objects put back because S3, SQS or the store was unavailable
	Unrecorded  int64         // messages whose failure could not be recorded (the store was unavailable), and still is not
	Busy        time.Duration // from the first message received to the last one settled: what rates are over
	Commits     int64         // transactions of a grouped store (0 for the others)
	Skipped     int64         // non-ObjectCreated records and test events
	Bytes       int64         // decompressed bytes processed
	Fetched     int64         // bytes fetched from S3
	Lines       int64
	Elapsed     time.Duration
	OutDir      string

	// Undone counts the messages put back for a retry (S3 or the store unavailable, or a failure
	// of their own) and not finished since: work the run leaves in the queue.
	Undone int64
	// Received, Retried, Released and DeadLettered count the messages received, put back for a
	// retry, handed back at once (shutdown), and sent to the dead-letter queue, whatever the source.
	Received, Retried, Released, DeadLettered int64
}

// Daemon is a configured Palleto. Create it with New; Run it once.
type Daemon struct {
	cfg Config
	log *slog.Logger
	src queue.Source
	sqs *sqs.Source // the SQS source, when the source is SQS
	// srcName names the source in metrics and the log ("sqs", "nats", "webhook", ...).
	srcName string
	fetch   *fetch.Fetcher
	store   store.Store
	proc    process.Processor
	pl      *engine.Pipeline[*job]
	deps    Deps
	met     *metrics.Metrics
	health  *breaker.Breaker

	traceMu sync.Mutex
	stats   struct {
		messages, deleted, objects, already, failed, deferred, skipped, bytes, fetched, lines atomic.Int64
		firstWork, lastWork                                                                   atomic.Int64 // unix nanos
	}
	// unrecorded holds the messages whose failure could not be recorded, until a later delivery
	// of theirs is recorded or done, or until they would have come back (see unrecordedAt).
	unrecordedMu sync.Mutex
	unrecorded   map[string]time.Time // message ID -> when it no longer counts
	sqsDown      atomic.Int64         // unix nanos since receives fail; 0 while they work
	testLog      sync.Once

	ack    acker     // acknowledgement's owner (ack.go)
	out    outcomes  // what was decided for messages, whatever the source
	undone undoneSet // messages put back for a retry and not finished since
	good   goodKeys  // per bucket, the last object read fine: the bucket's fallback probe
	// unsettled counts the messages received and not yet decided (being handled, waiting in the
	// producer, waiting for commits or for an acker) or handed back.
	unsettled  atomic.Int64
	gatedPolls atomic.Int64 // polls the breaker answered empty, not yet seen by OnReceive
	// pausedIdleAfter, when set, replaces idleAfterPause's default (tests).
	pausedIdleAfter time.Duration
}

// New checks cfg, opens the results store and prepares the pipeline.
func New(cfg Config, deps Deps) (*Daemon, error) {
	if err := cfg.validate(cfg.Source != "" || deps.Source != nil); err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: deps.Logger, deps: deps, proc: deps.Processor, met: deps.Metrics}
	if d.log == nil {
		d.log = slog.Default()
	}
	d.health = d.newBreaker()
	d.ack.d = d
	d.store = deps.Store
	if d.store == nil {
		group := cfg.Commit
		group.Logger = d.log
		group.OnCommit = d.committedGroup
		st, err := OpenStore(context.Background(), cfg.OutDir, group, deps.S3)
		if err != nil {
			return nil, fmt.Errorf("out: %w", err)
		}
		d.store = st
	}
	if d.proc == nil {
		opts := cfg.ProcessorOptions
		if c, ok := d.store.(store.Copier); ok {
			opts.Store, opts.CopyPath = c, c.CopyPath
		}
		p, err := process.New(cfg.Processor, opts)
		if err != nil {
			d.store.Close()
			return nil, err
		}
		d.proc = p
	}
	d.fetch = fetch.New(deps.S3)
	if cfg.S3FirstByteTimeout > 0 {
		d.fetch.FirstByteTimeout = cfg.S3FirstByteTimeout
	}
	if cfg.S3ReadTimeout > 0 {
		d.fetch.ReadTimeout = cfg.S3ReadTimeout
	}
	d.fetch.PartSize, d.fetch.PartsInFlight = cfg.PartSize, cfg.PartsInFlight
	if cfg.ReadAhead > 0 {
		d.fetch.ReadAhead = fetch.NewReadAhead(cfg.ReadAhead)
		d.met.SetReadAhead(d.fetch.ReadAhead.InUse)
	}
	d.fetch.OnRange = func(ri fetch.RangeInfo) {
		d.met.Range(ri.End - ri.Start)
		how := "streamed"
		if ri.Ahead {
			how = "read ahead"
		}
		d.tracef("s3: s3://%s/%s range %d-%d (%d bytes, %s)", ri.Bucket, ri.Key, ri.Start, ri.End-1, ri.End-ri.Start, how)
	}
	d.fetch.OnGet = d.met.GetAnswered
	d.fetch.OnResume = func(bucket, key string, off int64, cause error) {
		d.met.Resumed()
		d.tracef("s3: s3://%s/%s broke at byte %d (%v); resuming with a Range request", bucket, key, off, cause)
		d.log.Warn("S3 body broken; resuming with a Range request", "bucket", bucket, "key", key, "offset", off, "error", cause)
	}
	d.src = deps.Source
	if d.src != nil {
		d.sqs, _ = d.src.(*sqs.Source)
		d.srcName = d.nameOfSource()
	} else if err := d.openSource(); err != nil {
		d.store.Close()
		return nil, err
	}
	ec := cfg.Engine
	ec.Logger = d.log
	ec.Busy = d.workLeft // the gate is jobSource.Receive's, so that a gated poll counts toward an idle exit
	user := ec.Producer.OnReceive
	ec.Producer.OnReceive = func(p engine.PollDone) {
		if !d.gatedPoll(p) {
			d.met.Received(p.Items, p.Err)
		}
		d.receiveState(p.Err)
		if user != nil {
			user(p)
		}
	}
	if cfg.Trace != nil {
		ec.Producer.Trace = d.tracef
	}
	d.pl = engine.New[*job](jobSource{d.src, &d.stats.firstWork, d}, ec, engine.Handler[*job]{
		Handle:  d.handle,
		Settle:  d.settle,
		Release: d.release,
		Prepare: d.prepare,
	})
	d.met.SetDemand(d.pl.Demand)
	return d, nil
}

// receiveState logs the state changes of receiving: the first failure (with what the error
// says about the world), and the first success after failures. Failures in between go to the
// debug log: an SQS outage is one line, not one a second.
func (d *Daemon) receiveState(err error) {
	switch {
	case err == nil:
		if since := d.sqsDown.Swap(0); since != 0 {
			d.log.Warn(d.srcLabel()+" receives work again", "down_for", time.Since(time.Unix(0, since)).Round(time.Second).String())
			d.met.DependencyChanged(d.source(), false, nil)
		}
	case errors.Is(err, context.Canceled):
	case d.sqsDown.CompareAndSwap(0, time.Now().UnixNano()):
		hint := ""
		if d.srcName == sqs.Name {
			hint = sqs.Hint(err)
		}
		d.log.Error(d.srcLabel()+" receive failing: backing off (1s, doubling up to 30s) until it works; messages in flight are kept"+hint, "error", err)
		d.met.DependencyChanged(d.source(), true, err)
	default:
		d.log.Debug(d.srcLabel()+" receive still failing", "error", err)
	}
}

// jobSource adapts the queue to the engine: each message becomes a job, which carries what its
// handling found to its settling.
type jobSource struct {
	src       queue.Source
	firstWork *atomic.Int64 // set at the first message received
	d         *Daemon       // its breaker gates receiving; it counts what is received
}

func (s jobSource) Receive(ctx context.Context, max int) ([]*job, error) {
	if s.d != nil {
		if ok, err := s.d.gate(ctx); !ok {
			return nil, err
		}
	}
	msgs, err := s.src.Receive(ctx, max)
	if s.d != nil && len(msgs) > 0 {
		s.d.unsettled.Add(int64(len(msgs)))
		s.d.out.received.Add(int64(len(msgs)))
		s.d.met.SourceReceived(s.d.source(), len(msgs))
	}
	if len(msgs) > 0 && s.firstWork != nil {
		s.firstWork.CompareAndSwap(0, time.Now().UnixNano())
	}
	jobs := make([]*job, len(msgs))
	for i, m := range msgs {
		jobs[i] = &job{m: m}
	}
	return jobs, err
}

// tracing says whether tracef writes anything: on the per-object path, a call is made only then,
// since its arguments are boxed (allocated) even when it writes nothing.
func (d *Daemon) tracing() bool { return d.cfg.Trace != nil }

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
		AlreadyDone: d.stats.already.Load(), Failed: d.stats.failed.Load(), Deferred: d.stats.deferred.Load(),
		Unrecorded: d.unrecordedCount(), Undone: d.undone.count(), Received: d.out.received.Load(), Retried: d.out.retried.Load(),
		Released: d.out.released.Load(), DeadLettered: d.out.deadLettered.Load(), Skipped: d.stats.skipped.Load(), Busy: d.busy(), Commits: d.commits(),
		Bytes: d.stats.bytes.Load(), Fetched: d.stats.fetched.Load(), Lines: d.stats.lines.Load(), OutDir: d.store.String(),
	}
}

func (d *Daemon) commits() int64 {
	if g, ok := d.store.(interface {
		Stats() (groups, results int64)
	}); ok {
		groups, _ := g.Stats()
		return groups
	}
	return 0
}

// GroupSize is the mean results per commit of a grouped store (0 for the others).
func (s Summary) GroupSize() float64 {
	if s.Commits == 0 {
		return 0
	}
	return float64(s.Objects) / float64(s.Commits)
}

func (d *Daemon) busy() time.Duration {
	first, last := d.stats.firstWork.Load(), d.stats.lastWork.Load()
	if first == 0 || last < first {
		return 0
	}
	return time.Duration(last - first)
}

// logStopping says, once, why the daemon stops (the signal), what the stop waits for and how
// long at most: the objects in progress (up to the shutdown timeout, then cancelled, up to the
// hard-stop timeout more) and the receives already out, which end within their wait time.
func (d *Daemon) logStopping(ctx context.Context) {
	why := "stop requested"
	if c := context.Cause(ctx); c != nil && c != context.Canceled { // a signal's cause also Is Canceled
		why = c.Error() // signal.NotifyContext's: "interrupt signal received"
	}
	e := d.cfg.Engine
	hard := e.HardStopTimeout
	if hard <= 0 {
		hard = 10 * time.Second // the engine's default
	}
	polls := min(d.cfg.SQS.WaitTime+time.Second, e.ShutdownTimeout)
	atMost := max(e.ShutdownTimeout+hard, polls)
	n := d.pl.InFlight()
	d.log.Info(fmt.Sprintf("stopping (%s): no more receives; waiting for %d objects in progress (up to %s, then cancelled) and the receives already out (up to %s), then handing back the messages not started; at most %s",
		why, n, e.ShutdownTimeout, polls, atMost),
		"cause", why, "in_progress", n, "shutdown_timeout", e.ShutdownTimeout.String(), "waits_at_most", atMost.String(),
		"polls_in_flight_end_within", polls.String())
}

// noteUnrecorded says whether message id's failure could not be recorded (true) or is now
// recorded or done (false).
func (d *Daemon) noteUnrecorded(id string, unrecorded bool) {
	d.noteUnrecordedAt(id, unrecorded, time.Now())
}

func (d *Daemon) noteUnrecordedAt(id string, unrecorded bool, now time.Time) {
	d.unrecordedMu.Lock()
	defer d.unrecordedMu.Unlock()
	if !unrecorded {
		delete(d.unrecorded, id)
		return
	}
	if d.unrecorded == nil {
		d.unrecorded = map[string]time.Time{}
	}
	// Such a message is retried after RetryBackoff (at most a minute) or, if even that failed,
	// after its visibility timeout. Once it is that long overdue by one more visibility timeout
	// and has not come back here, another replica has it or finished it (or the queue's redrive
	// moved it): it is not this process's to report.
	vt := max(d.cfg.SQS.VisibilityTimeout, 30*time.Second)
	d.unrecorded[id] = now.Add(max(min(d.cfg.RetryBackoff, time.Minute), vt) + vt)
}

func (d *Daemon) unrecordedCount() int64 { return d.unrecordedAt(time.Now()) }

// unrecordedAt drops the messages no longer counted at now, and counts the rest.
func (d *Daemon) unrecordedAt(now time.Time) int64 {
	d.unrecordedMu.Lock()
	defer d.unrecordedMu.Unlock()
	for id, until := range d.unrecorded {
		if now.After(until) {
			delete(d.unrecorded, id)
		}
	}
	return int64(len(d.unrecorded))
}

// InFlight is the number of messages being handled now.
func (d *Daemon) InFlight() int { return d.pl.InFlight() }

// Ready reports why the daemon cannot work, or nil: the queue must answer, the results store
// must take a write, and the breaker must not pause receiving (the store down, or S3 of every
// bucket: one bucket down alone stops only its own messages). It is what /readyz serves.
func (d *Daemon) Ready(ctx context.Context) error {
	if err := d.health.Err(); err != nil {
		return err
	}
	if err := d.src.Ready(ctx); err != nil {
		return err
	}
	return d.store.Ready(ctx)
}

// Run consumes the queue until ctx is done (or, with ExitWhenIdle, until the queue stays empty),
// then drains: in-flight messages finish within the shutdown timeout, unstarted ones are handed
// back, pending deletes are flushed. A stop by ctx is not an error.
func (d *Daemon) Run(ctx context.Context) (Summary, error) {
	start := time.Now()
	d.log.Info("palleto started", "source", d.srcName, "url", queue.Redact(d.cfg.sourceURL()), "out", d.store.String(), "workers", d.cfg.Engine.Workers,
		"pollers", d.cfg.Engine.Producer.Pollers, "processor", d.proc.Name(), "visibility_timeout", d.cfg.SQS.VisibilityTimeout)
	stopped := make(chan struct{})
	go func() { // say at once what a stop waits for, and for how long at most
		select {
		case <-ctx.Done():
			d.logStopping(ctx)
		case <-stopped:
		}
	}()
	d.warnOwnOutput()
	d.met.InitSource(d.source())
	d.pl.Run(ctx)
	close(stopped)
	d.health.Close()
	// The store first: a grouped store commits what is pending, and the messages of those
	// results are decided; then the ackers make every decision enqueued; then the source flushes
	// the deletes and stops its heartbeat.
	if err := d.store.Close(); err != nil {
		d.log.Error("the results store did not close cleanly", "out", d.store.String(), "err", err)
	}
	d.ack.close()
	d.src.Close()
	s := d.Stats()
	s.Elapsed = time.Since(start)
	d.log.Info("palleto stopped", "objects", s.Objects, "already_done", s.AlreadyDone, "failed", s.Failed, "deferred", s.Deferred,
		"messages_deleted", s.Deleted, "undone", s.Undone, "bytes", s.Bytes, "elapsed", s.Elapsed.Round(time.Millisecond))
	return s, nil
}
