package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/palleto/palleto/queue"
)

func init() { queue.RegisterPublisher("nats", Name, nil, OpenPublisher) }

// Publisher publishes notifications to the subject a stream's consumer reads (`palleto backfill
// --to nats://...`), each acknowledged by the stream. Safe for concurrent use.
type Publisher struct {
	c       *Source // its connection and settings; no consumer
	js      jetstream.JetStream
	subject string
}

var _ queue.Publisher = (*Publisher)(nil)

// OpenPublisher connects and finds the subject to publish to: subject= when given (the stream is
// created with it when missing), else the consumer's filter subject, else the stream's only
// subject; each must be a literal subject the stream captures.
func OpenPublisher(ctx context.Context, u *url.URL, opts queue.Options) (queue.Publisher, error) {
	cfg, err := ParseURL(u)
	if err != nil {
		return nil, err
	}
	c := &Source{cfg: cfg, name: cfg.Stream + "/" + cfg.Consumer, log: opts.Logger, call: opts.CallTimeout}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.call <= 0 {
		c.call = 30 * time.Second
	}
	c.nc, err = natsio.Connect(strings.Join(cfg.Servers, ","), c.connectOptions()...)
	if err != nil {
		return nil, fmt.Errorf("nats connect %s: %w", strings.Join(cfg.Servers, ","), err)
	}
	p := &Publisher{c: c}
	p.js, err = jetstream.New(c.nc, jetstream.WithPublishAsyncTimeout(c.call))
	if err == nil {
		sctx, cancel := context.WithTimeout(ctx, c.call)
		p.subject, err = p.findSubject(sctx)
		cancel()
	}
	if err != nil {
		c.nc.Close()
		return nil, err
	}
	return p, nil
}

func (p *Publisher) findSubject(ctx context.Context) (string, error) {
	c := p.c.cfg
	stream, err := ensureStream(ctx, p.js, c, p.c.log)
	if err != nil {
		return "", err
	}
	subjects := stream.CachedInfo().Config.Subjects
	subject := c.Subject
	if subject == "" {
		if cons, err := stream.Consumer(ctx, c.Consumer); err == nil {
			subject = cons.CachedInfo().Config.FilterSubject
		} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return "", fmt.Errorf("nats consumer %s: %w", p.c.name, err)
		}
		if subject == "" && len(subjects) == 1 {
			subject = subjects[0]
		}
	}
	if subject == "" || strings.ContainsAny(subject, "*>") {
		return "", fmt.Errorf("to: which subject of stream %s to publish to is not clear (%q): give subject= in the URL", c.Stream, subject)
	}
	for _, f := range subjects {
		if subjectMatches(f, subject) {
			return subject, nil
		}
	}
	return "", fmt.Errorf("to: stream %s does not capture subject %q (its subjects: %s)", c.Stream, subject, strings.Join(subjects, ", "))
}

// Subject is the subject the publisher publishes to.
func (p *Publisher) Subject() string { return p.subject }

// Publish publishes every body to the subject, many at once, and waits for the stream's
// acknowledgement of each (within the call deadline); bodies not acknowledged are published
// again, up to 5 times with a growing wait.
func (p *Publisher) Publish(ctx context.Context, bodies []string) error {
	pending := bodies
	var last error
	wait := 200 * time.Millisecond
	for attempt := 0; attempt < 5 && len(pending) > 0; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
			wait *= 2
		}
		futures := make([]jetstream.PubAckFuture, len(pending))
		for i, b := range pending {
			f, err := p.js.PublishAsync(p.subject, []byte(b))
			if err != nil {
				last = err
				continue
			}
			futures[i] = f
		}
		var failed []string
		for i, f := range futures {
			if f == nil {
				failed = append(failed, pending[i])
				continue
			}
			select {
			case <-f.Ok():
			case err := <-f.Err():
				last = err
				failed = append(failed, pending[i])
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		pending = failed
	}
	if len(pending) > 0 {
		return fmt.Errorf("nats publish %s: %d of %d notifications not acknowledged after 5 tries: %w", p.subject, len(pending), len(bodies), last)
	}
	return nil
}

// Check fails when the connection is down or the stream does not answer.
func (p *Publisher) Check(ctx context.Context) error {
	if err := p.c.connected(); err != nil {
		return fmt.Errorf("to: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.c.call)
	defer cancel()
	if _, err := p.js.Stream(ctx, p.c.cfg.Stream); err != nil {
		return fmt.Errorf("to: nats stream %s: %w", p.c.cfg.Stream, err)
	}
	return nil
}

// Close waits for acknowledgements still due and closes the connection.
func (p *Publisher) Close() error {
	select {
	case <-p.js.PublishAsyncComplete():
	case <-time.After(p.c.call):
	}
	p.c.nc.Close()
	return nil
}
