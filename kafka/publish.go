package kafka

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/palleto/palleto/queue"
)

func init() {
	queue.RegisterPublisher("kafka", "kafka", nil, func(_ context.Context, u *url.URL, opts queue.Options) (queue.Publisher, error) {
		return NewPublisher(u, opts.CallTimeout)
	})
}

// Publisher produces notifications to the topic of a kafka:// source URL: what `palleto
// backfill --to kafka://...` sends the objects' events with.
type Publisher struct {
	cl      *kgo.Client
	topic   string
	timeout time.Duration
}

// NewPublisher connects to the brokers of a kafka:// URL (its group is not used).
func NewPublisher(u *url.URL, callTimeout time.Duration) (*Publisher, error) {
	cfg, err := parseURL(u)
	if err != nil {
		return nil, err
	}
	if callTimeout <= 0 {
		callTimeout = 30 * time.Second
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.brokers...), kgo.DialTimeout(min(callTimeout, 10*time.Second)),
		kgo.RetryTimeout(callTimeout)}, cfg.opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return &Publisher{cl: cl, topic: cfg.topic, timeout: callTimeout}, nil
}

// Publish produces each body as one record and returns once the brokers have them all.
func (p *Publisher) Publish(ctx context.Context, bodies []string) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	rs := make([]*kgo.Record, len(bodies))
	for i, b := range bodies {
		rs[i] = &kgo.Record{Topic: p.topic, Value: []byte(b)}
	}
	if err := p.cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		return fmt.Errorf("kafka produce to %s: %w", p.topic, err)
	}
	return nil
}

// Check makes sure a broker answers and the topic exists.
func (p *Publisher) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	return checkTopic(ctx, p.cl, p.topic)
}

// Close closes the client.
func (p *Publisher) Close() error { p.cl.Close(); return nil }
