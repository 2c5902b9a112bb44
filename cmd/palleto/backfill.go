package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"sort"
	"time"

	"github.com/palleto/palleto"
	"github.com/palleto/palleto/backfill"
	"github.com/palleto/palleto/queue"
	"github.com/palleto/palleto/sqs"
	"github.com/palleto/palleto/store"
)

// rfc3339 is a time flag in RFC 3339 (2026-11-30T00:00:00Z).
type rfc3339 struct{ t *time.Time }

func (f rfc3339) String() string {
	if f.t == nil || f.t.IsZero() {
		return ""
	}
	return f.t.Format(time.RFC3339)
}

func (f rfc3339) Set(v string) error {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return fmt.Errorf("%q is not an RFC 3339 time (2026-11-30T00:00:00Z)", v)
	}
	*f.t = t
	return nil
}

func cmdBackfill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg backfill.Config
	var out, progress, to string
	var asJSON bool
	fs := flag.NewFlagSet("palleto backfill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Bucket, "bucket", "", "the bucket whose objects to announce (required)")
	fs.StringVar(&cfg.QueueURL, "queue-url", "", "the SQS queue palleto run consumes (required unless --dry-run or --to)")
	fs.StringVar(&to, "to", "", "the source palleto run consumes, by its URL (as run's --source): an SQS queue URL (as --queue-url); nats://HOST:PORT/STREAM/CONSUMER[?subject=S] publishes to the stream's subject (subject=, else the consumer's filter); a webhook http(s)://HOST:PORT/PATH[?token=T] (one POST per object); kafka://BROKER:9092/TOPIC (one record per object); amqp://USER:PASS@HOST/VHOST?queue=Q (one persistent message per object)")
	fs.StringVar(&cfg.Prefix, "prefix", "", "list only keys that start with this")
	fs.Var(rfc3339{&cfg.Since}, "since", "only objects last modified at or after this time (RFC 3339)")
	fs.Var(rfc3339{&cfg.Until}, "until", "only objects last modified before this time (RFC 3339)")
	fs.Var((*listFlag)(&cfg.Include), "include", "only keys matching one of these globs (as for run: '*' does not cross '/'; repeat or comma-separate)")
	fs.Var((*listFlag)(&cfg.Exclude), "exclude", "skip keys matching one of these globs")
	fs.StringVar(&out, "out", "", "a results store run writes to (a directory, sqlite:PATH, postgres://..., s3://BUCKET/PREFIX): objects whose result is there for the same eTag are skipped")
	fs.StringVar(&cfg.Processor, "processor", "lines", "with --out: the processor whose results count")
	fs.BoolVar(&cfg.DryRun, "dry-run", false, "send nothing: count what would be sent, per top-level prefix (with --out: the objects that have no result yet)")
	fs.StringVar(&cfg.Checkpoint, "checkpoint", "", "file recording how far the listing got; started again with it, a backfill goes on from there")
	fs.IntVar(&cfg.PageSize, "page-size", 1000, "objects per ListObjectsV2 page (and per checkpoint)")
	fs.BoolVar(&asJSON, "json", false, `the last line of stdout is one JSON object: {"listed":N,"filtered":N,"skipped_done":N,"sent":N,"bytes":N}`)
	fs.StringVar(&progress, "progress", "auto", "live progress line on stderr: auto (when stderr is a terminal), always, never")
	fs.String("config", "", "YAML file of these settings, keyed by flag name; flags and PALLETO_* win over it")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: palleto backfill --bucket B --queue-url Q [flags]
       palleto backfill --bucket B --to nats://HOST:PORT/STREAM/CONSUMER [flags]

Announces the objects already in a bucket (uploaded before its notification was set up, or while
it was wrong, or lost in an outage): lists the bucket and sends one S3-format ObjectCreated
notification per selected object to the queue that palleto run consumes, which then processes
them exactly as new ones. Notifications carry configurationId "palleto-backfill".

  palleto backfill --bucket B --dry-run --out RESULTS       # audit: what has no result yet?
  palleto backfill --bucket B --queue-url Q --out RESULTS --checkpoint backfill.json
  palleto run --queue-url Q --out RESULTS

Settings come from these flags, PALLETO_<FLAG> environment variables, the YAML file of --config.
Exit codes: 0 everything listed was sent or skipped, 1 a listing or send failed (start again with
the same --checkpoint to go on), 2 bad usage.
`)
		printFlags(fs, fs.Output())
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if to != "" {
		if cfg.QueueURL != "" && cfg.QueueURL != to {
			return usageError{fmt.Errorf("to: %q and queue-url %q name two destinations; give one", queue.Redact(to), cfg.QueueURL)}
		}
		if u, err := url.Parse(to); err == nil && sqs.IsQueueURL(u) {
			cfg.QueueURL, to = to, "" // an SQS queue, spelled as --to
		}
	}
	cfg.To = to
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	if cfg.QueueURL != "" {
		if err := sqs.CheckQueueURL("queue-url", cfg.QueueURL); err != nil {
			return usageError{err}
		}
	}
	if out != "" {
		if _, err := palleto.StoreKind(out); err != nil {
			return usageError{err}
		}
	}
	show, err := wantProgress(progress, stderr)
	if err != nil {
		return usageError{err}
	}
	sqsc, s3c, err := palleto.AWSClientsWith(ctx, palleto.ClientOptions{Conns: 8, QueueURL: cfg.QueueURL})
	if err != nil {
		return err
	}
	var st store.Store
	if out != "" {
		if st, err = palleto.OpenStore(ctx, out, store.GroupConfig{}, s3c); err != nil {
			return fmt.Errorf("out: %w", err)
		}
		defer st.Close()
	}
	start := time.Now()
	if show {
		cfg.Progress = func(s backfill.Summary) {
			fmt.Fprintf(stderr, "\r\033[Kbackfill: %d listed, %d sent, %d already done, %d filtered (%.0f objects/s)",
				s.Listed, s.Sent, s.SkippedDone, s.Filtered, float64(s.Listed)/max(time.Since(start).Seconds(), 1e-9))
		}
	}
	var pub backfill.Publisher = backfill.SQS(sqsc, cfg.QueueURL)
	if to != "" && !cfg.DryRun {
		log, _ := newLogger(stderr, "warn", "text")
		p, err := queue.OpenPublisher(ctx, to, queue.Options{Logger: log, CallTimeout: 30 * time.Second})
		if err != nil {
			return err
		}
		defer p.Close()
		pub = p
	}
	sum, runErr := backfill.RunTo(ctx, cfg, s3c, pub, st)
	if show {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if runErr != nil && (cfg.DryRun || sum.Listed == 0) {
		// Counts of a listing that failed (a missing bucket, say) would read as its answer: the
		// error alone. A backfill that sent some says how far it got, below.
		return backfillError(ctx, runErr)
	}
	if cfg.DryRun {
		prefixes := make([]string, 0, len(sum.ByPrefix))
		for p := range sum.ByPrefix {
			prefixes = append(prefixes, p)
		}
		sort.Strings(prefixes)
		what := "would be sent"
		if out != "" {
			what = "have no result in " + out + " and would be sent"
		}
		fmt.Fprintf(stdout, "dry run: %s (%s) %s:\n", count(sum.WouldSend, "object"), size(sum.Bytes), what)
		for _, p := range prefixes {
			name := p + "/"
			if p == "" {
				name = "(top level)"
			}
			fmt.Fprintf(stdout, "  %-40s %10d objects %12s\n", name, sum.ByPrefix[p].Objects, size(sum.ByPrefix[p].Bytes))
		}
	}
	verb, n := "sent", sum.Sent
	if cfg.DryRun {
		verb, n = "to send", sum.WouldSend
	}
	line := fmt.Sprintf("backfill s3://%s/%s: %d listed, %d filtered, %d already done, %d %s (%s) in %s",
		cfg.Bucket, cfg.Prefix, sum.Listed, sum.Filtered, sum.SkippedDone, n, verb, size(sum.Bytes), time.Since(start).Round(time.Millisecond))
	if sum.Resumed {
		line += fmt.Sprintf(" (resumed from %s)", cfg.Checkpoint)
	}
	if asJSON {
		fmt.Fprintln(stderr, line)
		data, _ := json.Marshal(sum)
		fmt.Fprintln(stdout, string(data))
	} else {
		fmt.Fprintln(stdout, line)
	}
	return backfillError(ctx, runErr)
}

// backfillError is the error a backfill ends with; a stop says by what (the signal).
func backfillError(ctx context.Context, err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("stopped (%s): %w", stopReason(ctx), err)
	}
	return err
}
