package palleto

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/palleto/palleto/queue"
	"github.com/palleto/palleto/sqs"
)

// sourceURL is the URL of the source the daemon consumes: --source, or the SQS queue of
// --queue-url.
func (c Config) sourceURL() string {
	if c.Source != "" {
		return c.Source
	}
	return c.SQS.QueueURL
}

// validateSource checks the source settings. haveSource says a source is given (Config.Source,
// or Deps.Source): then no SQS queue URL is required.
func (c Config) validateSource(haveSource bool) error {
	if !haveSource {
		if c.SQS.QueueURL == "" {
			return fmt.Errorf("queue-url: required (the SQS queue to consume, e.g. https://sqs.us-east-1.amazonaws.com/123456789012/uploads), or --source URL (nats://..., a webhook's http://127.0.0.1:PORT/PATH)")
		}
		return c.SQS.Validate()
	}
	if err := c.SQS.ValidateSettings(); err != nil {
		return err
	}
	if c.SQS.QueueURL != "" && c.Source == "" {
		if err := sqs.CheckQueueURL("queue-url", c.SQS.QueueURL); err != nil {
			return err
		}
	}
	if c.Source == "" {
		return nil
	}
	if c.SQS.QueueURL != "" && c.SQS.QueueURL != c.Source {
		return fmt.Errorf("source: %q and queue-url %q name two sources; give one (--queue-url is the SQS spelling of --source)", queue.Redact(c.Source), queue.Redact(c.SQS.QueueURL))
	}
	name, _, _, err := queue.Lookup(c.Source)
	if err != nil {
		return err
	}
	if c.DLQURL != "" && name != sqs.Name {
		return fmt.Errorf("dlq-url: %q is an SQS dead-letter queue, and the source %s is not SQS: name its dead letters in its URL (nats://...?dlq=SUBJECT)", c.DLQURL, queue.Redact(c.Source))
	}
	return nil
}

// openSource opens the source of cfg through the registry (--queue-url: SQS's opener, whatever
// the URL's host; --source: the opener its form chooses), and names it.
func (d *Daemon) openSource() error {
	cfg := d.cfg
	sc := cfg.SQS
	if sc.DLQURL == "" {
		sc.DLQURL = cfg.DLQURL
	}
	if cfg.Engine.ExitWhenIdle > 0 && sc.WaitTime > time.Second {
		// A batch run exits once the queue stays empty; a long poll started just before it
		// emptied would hold that exit for its whole wait (20s), and may not be cut short
		// without risking the messages it takes. Short polls keep the exit within about a
		// second of the idle time.
		sc.WaitTime = time.Second
	}
	opts := cfg.SourceOptions
	opts.Logger, opts.Trace = d.log, d.tracef
	opts.AckTimeout, opts.WaitTime, opts.CallTimeout = sc.VisibilityTimeout, sc.WaitTime, sc.CallTimeout
	if opts.CallTimeout == 0 {
		opts.CallTimeout = sqs.DefaultCallTimeout
	}
	opts.MaxInFlight = cfg.Engine.Workers + cfg.Engine.Prefetch
	if opts.Client == nil {
		opts.Client = &sqs.Setup{API: d.deps.SQS, Config: sc, Hooks: sqs.Hooks{
			Trace:    d.tracef,
			Deleted:  d.met.Deleted, // what SQS confirmed; Summary.Deleted counts the daemon's decisions (ack.go)
			Extended: d.met.Extended,
		}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.CallTimeout)
	defer cancel()
	var err error
	if cfg.Source == "" {
		d.srcName = sqs.Name
		d.src, err = queue.OpenAs(ctx, sqs.Name, sc.QueueURL, opts)
	} else {
		d.srcName, _, _, err = queue.Lookup(cfg.Source)
		if err == nil {
			d.src, err = queue.Open(ctx, cfg.Source, opts)
		}
	}
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	d.sqs, _ = d.src.(*sqs.Source)
	return nil
}

// nameOfSource names a source the caller gave (Deps.Source): by Config.Source's form when set.
func (d *Daemon) nameOfSource() string {
	if _, ok := d.src.(*sqs.Source); ok {
		return sqs.Name
	}
	if d.cfg.Source != "" {
		if name, _, _, err := queue.Lookup(d.cfg.Source); err == nil {
			return name
		}
	}
	return "custom"
}

// QueueDepth returns the queue's approximate visible and in-flight message counts, where the
// source can tell (queue.Depther).
func (d *Daemon) QueueDepth(ctx context.Context) (visible, inFlight int, err error) {
	dp, ok := d.src.(queue.Depther)
	if !ok {
		return 0, 0, fmt.Errorf("queue depth: the %s source cannot tell", d.srcName)
	}
	return dp.Depth(ctx)
}

// Check is the check at start: the source (and its dead-letter queue) answer and may be read,
// where the source can check (queue.Checker), and the results store takes a write. Its error
// names the setting at fault.
func (d *Daemon) Check(ctx context.Context) error {
	if c, ok := d.src.(queue.Checker); ok {
		if err := c.Check(ctx); err != nil {
			return err
		}
	}
	if err := d.store.Ready(ctx); err != nil {
		return fmt.Errorf("out: %w", err)
	}
	return nil
}

// srcLabel is the source's name as the log says it: "SQS", "NATS", "webhook".
func (d *Daemon) srcLabel() string {
	switch d.srcName {
	case sqs.Name, "nats":
		return strings.ToUpper(d.srcName)
	case "":
		return "source"
	}
	return d.srcName
}
