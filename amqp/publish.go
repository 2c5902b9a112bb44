package amqp

import (
	"context"
	"fmt"
	"net/url"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/palleto/palleto/queue"
)

func init() {
	queue.RegisterPublisher("amqp", "amqp", nil, func(_ context.Context, u *url.URL, opts queue.Options) (queue.Publisher, error) {
		return NewPublisher(u, opts.CallTimeout)
	})
	queue.RegisterPublisher("amqps", "amqp", nil, func(_ context.Context, u *url.URL, opts queue.Options) (queue.Publisher, error) {
		return NewPublisher(u, opts.CallTimeout)
	})
}

// Publisher publishes notifications to the queue of an amqp:// source URL (or to its exchange
// and routing key when the URL names them): what `palleto backfill --to amqp://...` sends the
// objects' events with. Each message is persistent and confirmed by the broker.
type Publisher struct {
	conn    *amqp091.Connection
	ch      *amqp091.Channel
	cfg     config
	timeout time.Duration
}

// NewPublisher connects to the broker of an amqp:// URL.
func NewPublisher(u *url.URL, callTimeout time.Duration) (*Publisher, error) {
	cfg, err := parseURL(u)
	if err != nil {
		return nil, err
	}
	if callTimeout <= 0 {
		callTimeout = 30 * time.Second
	}
	conn, err := amqp091.DialConfig(cfg.dial, amqp091.Config{Heartbeat: 10 * time.Second, Dial: amqp091.DefaultDial(callTimeout)})
	if err != nil {
		return nil, fmt.Errorf("amqp connect %s: %w", queue.Redact(cfg.dial), err)
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("amqp channel: %w", err)
	}
	return &Publisher{conn: conn, ch: ch, cfg: cfg, timeout: callTimeout}, nil
}

// Publish publishes each body and returns once the broker confirmed them all.
func (p *Publisher) Publish(ctx context.Context, bodies []string) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	exchange, key := "", p.cfg.queue
	if p.cfg.exchange != "" {
		exchange, key = p.cfg.exchange, p.cfg.routingKey
	}
	confs := make([]*amqp091.DeferredConfirmation, 0, len(bodies))
	for _, b := range bodies {
		c, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false,
			amqp091.Publishing{ContentType: "application/json", DeliveryMode: amqp091.Persistent, Body: []byte(b), Timestamp: time.Now()})
		if err != nil {
			return fmt.Errorf("amqp publish to %q: %w", key, err)
		}
		confs = append(confs, c)
	}
	for _, c := range confs {
		ok, err := c.WaitContext(ctx)
		if err != nil {
			return fmt.Errorf("amqp publish to %q: no confirm: %w", key, err)
		}
		if !ok {
			return fmt.Errorf("amqp publish to %q: the broker refused a message", key)
		}
	}
	return nil
}

// Check makes sure the queue (or the exchange) the messages go to exists.
func (p *Publisher) Check(ctx context.Context) error {
	done := make(chan error, 1)
	go func() {
		ch, err := p.conn.Channel()
		if err != nil {
			done <- err
			return
		}
		defer ch.Close()
		if p.cfg.exchange != "" {
			done <- ch.ExchangeDeclarePassive(p.cfg.exchange, "direct", true, false, false, false, nil)
			return
		}
		_, err = ch.QueueDeclarePassive(p.cfg.queue, true, false, false, false, nil)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("to: amqp queue %q (exchange %q): %w", p.cfg.queue, p.cfg.exchange, err)
		}
		return nil
	case <-time.After(p.timeout):
		p.conn.Close()
		return fmt.Errorf("to: amqp: no answer from the broker within %s", p.timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close closes the connection.
func (p *Publisher) Close() error { return p.conn.Close() }
