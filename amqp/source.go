package amqp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/palleto/palleto/queue"
)

func init() {
	queue.Register("amqp", "amqp", nil, open)
	queue.Register("amqps", "amqp", nil, open)
}

// Headers Palleto sets on the messages it publishes (retries and dead letters).
const (
	HeaderAttempts     = "x-palleto-attempts" // failures so far, on a retried message
	HeaderMessageID    = "x-palleto-message-id"
	HeaderError        = "x-palleto-error"
	HeaderClass        = "x-palleto-class"
	HeaderReceiveCount = "x-palleto-receive-count"
)

// Source consumes one RabbitMQ queue. Every method is safe for concurrent use.
type Source struct {
	cfg  config
	vh   string
	log  *slog.Logger
	held atomic.Int64 // deliveries received and not yet settled

	mu         sync.Mutex
	conn       *amqp091.Connection
	ch         *amqp091.Channel // consumes and acks
	pub        *amqp091.Channel // publishes retries and dead letters, in confirm mode
	deliveries <-chan amqp091.Delivery
	gen        uint64        // counts connections: a delivery of an older one cannot be acked
	up         chan struct{} // closed while connected; replaced when the connection is lost
	downErr    error         // why it is not connected
	delays     map[time.Duration]bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// delivery is a received message's handle.
type delivery struct {
	gen      uint64
	tag      uint64
	attempts int
	settled  atomic.Bool
	d        amqp091.Delivery
}

func open(ctx context.Context, u *url.URL, opts queue.Options) (queue.Source, error) {
	return Open(ctx, u, opts)
}

// Open connects to the broker the URL names and starts consuming its queue. It returns once the
// first connection is up, or with its error; later losses reconnect by themselves.
func Open(ctx context.Context, u *url.URL, opts queue.Options) (*Source, error) {
	cfg, err := parseURL(u)
	if err != nil {
		return nil, err
	}
	if cfg.prefetch == 0 {
		cfg.prefetch = max(opts.MaxInFlight, 1)
	}
	cfg.callTimeout, cfg.waitTime = opts.CallTimeout, opts.WaitTime
	if cfg.callTimeout <= 0 {
		cfg.callTimeout = 30 * time.Second
	}
	if cfg.waitTime <= 0 {
		cfg.waitTime = 20 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Source{cfg: cfg, vh: vhost(u), log: log, up: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.connect(); err != nil {
		s.cancel()
		return nil, err
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.keepConnected() }()
	return s, nil
}

// connect dials, opens both channels, sets the prefetch and starts the consumer.
func (s *Source) connect() error {
	conn, err := amqp091.DialConfig(s.cfg.dial, amqp091.Config{Heartbeat: 10 * time.Second, Dial: amqp091.DefaultDial(s.cfg.callTimeout)})
	if err != nil {
		return fmt.Errorf("amqp connect %s: %w", queue.Redact(s.cfg.dial), err)
	}
	fail := func(what string, err error) error {
		conn.Close()
		return fmt.Errorf("amqp %s (queue %q, vhost %q): %w", what, s.cfg.queue, s.vh, err)
	}
	var ch, pub *amqp091.Channel
	var deliveries <-chan amqp091.Delivery
	err = s.deadline(conn, func() error {
		if ch, err = conn.Channel(); err != nil {
			return err
		}
		if s.cfg.exchange != "" {
			if err := ch.ExchangeDeclare(s.cfg.exchange, "direct", true, false, false, false, nil); err != nil {
				return fmt.Errorf("declare exchange %q: %w", s.cfg.exchange, err)
			}
			if _, err := ch.QueueDeclare(s.cfg.queue, true, false, false, false, nil); err != nil {
				return fmt.Errorf("declare: %w", err)
			}
			if err := ch.QueueBind(s.cfg.queue, s.cfg.routingKey, s.cfg.exchange, false, nil); err != nil {
				return fmt.Errorf("bind to exchange %q: %w", s.cfg.exchange, err)
			}
		}
		if err := ch.Qos(s.cfg.prefetch, 0, false); err != nil {
			return fmt.Errorf("qos: %w", err)
		}
		if deliveries, err = ch.Consume(s.cfg.queue, "", false, false, false, false, nil); err != nil {
			return fmt.Errorf("consume: %w", err)
		}
		if pub, err = conn.Channel(); err != nil {
			return err
		}
		if s.cfg.dlq != "" {
			if _, err := pub.QueueDeclare(s.cfg.dlq, true, false, false, false, nil); err != nil {
				return fmt.Errorf("declare dead-letter queue %q: %w", s.cfg.dlq, err)
			}
		}
		return pub.Confirm(false)
	})
	if err != nil {
		return fail("open", err)
	}
	s.mu.Lock()
	s.conn, s.ch, s.pub, s.deliveries = conn, ch, pub, deliveries
	s.gen++
	s.delays = map[time.Duration]bool{}
	s.downErr = nil
	close(s.up)
	s.mu.Unlock()
	return nil
}

// deadline runs fn, a sequence of calls to the broker, under the call timeout: amqp091's calls
// wait for the broker's answer with no deadline of their own, so past it the connection is
// closed, which ends them.
func (s *Source) deadline(conn *amqp091.Connection, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(s.cfg.callTimeout):
		conn.Close()
		<-done
		return fmt.Errorf("no answer from the broker within %s", s.cfg.callTimeout)
	}
}

// keepConnected waits for the connection or a channel to close and connects again, with
// backoff (1s doubling to 30s), until Close.
func (s *Source) keepConnected() {
	for {
		s.mu.Lock()
		conn, ch, pub := s.conn, s.ch, s.pub
		s.mu.Unlock()
		var cause *amqp091.Error
		select {
		case <-s.ctx.Done():
			return
		case cause = <-conn.NotifyClose(make(chan *amqp091.Error, 1)):
		case cause = <-ch.NotifyClose(make(chan *amqp091.Error, 1)):
		case cause = <-pub.NotifyClose(make(chan *amqp091.Error, 1)):
		}
		conn.Close()
		err := errors.New("connection closed")
		if cause != nil {
			err = cause
		}
		s.mu.Lock()
		s.downErr = fmt.Errorf("amqp %s: connection lost: %w", queue.Redact(s.cfg.dial), err)
		s.up = make(chan struct{})
		s.deliveries = nil
		s.held.Store(0) // the broker requeued every unacknowledged delivery
		s.mu.Unlock()
		s.log.Error("AMQP connection lost: reconnecting (1s, doubling up to 30s); unacknowledged messages go back to the queue", "error", err)
		wait := time.Second
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(wait):
			}
			err := s.connect()
			if err == nil {
				s.log.Warn("AMQP connection back: consuming again", "queue", s.cfg.queue)
				break
			}
			s.mu.Lock()
			s.downErr = err
			s.mu.Unlock()
			s.log.Debug("AMQP reconnect failed", "error", err)
			wait = min(2*wait, 30*time.Second)
		}
	}
}

// Receive returns up to max deliveries: it waits up to the wait time for the first, then takes
// what is already there. While the connection is down it returns why, after waiting up to the
// wait time for it to come back. After Close it returns an error at once.
func (s *Source) Receive(ctx context.Context, max int) ([]*queue.Message, error) {
	if s.ctx.Err() != nil {
		return nil, errSourceClosed
	}
	timer := time.NewTimer(s.cfg.waitTime)
	defer timer.Stop()
	s.mu.Lock()
	deliveries, gen, up := s.deliveries, s.gen, s.up
	s.mu.Unlock()
	if deliveries == nil {
		select {
		case <-up:
			return nil, nil
		case <-timer.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		s.mu.Lock()
		err := s.downErr
		s.mu.Unlock()
		return nil, err
	}
	var out []*queue.Message
	select {
	case d, ok := <-deliveries:
		if !ok {
			return nil, nil
		}
		out = append(out, s.message(gen, d))
	case <-timer.C:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for len(out) < max {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return out, nil
			}
			out = append(out, s.message(gen, d))
		default:
			return out, nil
		}
	}
	return out, nil
}

func (s *Source) message(gen uint64, d amqp091.Delivery) *queue.Message {
	s.mu.Lock()
	if gen == s.gen && s.deliveries != nil { // one of a lost connection is not held: the broker requeued it
		s.held.Add(1)
	}
	s.mu.Unlock()
	h := &delivery{gen: gen, tag: d.DeliveryTag, d: d, attempts: intHeader(d.Headers, HeaderAttempts)}
	count := 1 + h.attempts
	if n := intHeader(d.Headers, "x-delivery-count"); n+1 > count { // quorum queues count deliveries
		count = n + 1
	}
	if d.Redelivered && count < 2 {
		count = 2
	}
	id := d.MessageId
	if v, ok := d.Headers[HeaderMessageID].(string); ok && v != "" {
		id = v
	}
	if id == "" { // MinIO and Ceph set none: the body's digest names it the same on every delivery
		sum := sha256.Sum256(d.Body)
		id = "sha256:" + hex.EncodeToString(sum[:16])
	}
	m := &queue.Message{ID: id, Body: d.Body, ReceiveCount: count, ReceivedAt: time.Now(), Handle: h}
	if !d.Timestamp.IsZero() {
		m.SentAt = d.Timestamp
	}
	return m
}

func intHeader(t amqp091.Table, k string) int {
	switch v := t[k].(type) {
	case int32:
		return int(v)
	case int64:
		return int(v)
	case int:
		return v
	case int16:
		return int(v)
	case int8:
		return int(v)
	}
	return 0
}

// settle marks m settled; false when it was already (a second call is a no-op).
func (s *Source) settle(m *queue.Message) (*delivery, bool) {
	h, ok := m.Handle.(*delivery)
	if !ok || !h.settled.CompareAndSwap(false, true) {
		return h, false
	}
	s.mu.Lock()
	if h.gen == s.gen && s.deliveries != nil { // held was set to 0 when its connection was lost
		s.held.Add(-1)
	}
	s.mu.Unlock()
	return h, true
}

// ackOrNack acks (or nacks with requeue) h on its channel; a delivery of a connection that is
// gone was requeued by the broker already, so there is nothing to do.
//
// The frame is written outside the source's lock and under the call timeout: a broker that stops
// reading the connection (a memory or disk alarm blocks it) would otherwise hold the writer, and
// with the lock every Receive, Ready and Depth, for ever. Past the timeout the connection is
// closed: the broker requeues what was not acked, and it comes back and is found done.
func (s *Source) ackOrNack(h *delivery, ack bool) error {
	s.mu.Lock()
	if h.gen != s.gen || s.deliveries == nil {
		s.mu.Unlock()
		return nil
	}
	ch, conn := s.ch, s.conn
	s.mu.Unlock()
	return s.deadline(conn, func() error {
		if ack {
			return ch.Ack(h.tag, false)
		}
		return ch.Nack(h.tag, false, true)
	})
}

// Delete acks m.
func (s *Source) Delete(m *queue.Message) {
	h, ok := s.settle(m)
	if !ok {
		return
	}
	if err := s.ackOrNack(h, true); err != nil {
		s.log.Warn("AMQP ack failed; the message comes back and is found done", "message_id", m.ID, "error", err)
	}
}

// Release makes msgs visible again at once: each is published again to the queue with its
// delivery counted in the x-palleto-attempts header, then acked (a nack with requeue would
// bring it back with nothing to tell its next delivery from its second: classic queues count no
// deliveries, and the poison guard needs to see each one). A message whose copy cannot be
// published is nacked with requeue instead.
func (s *Source) Release(ctx context.Context, msgs []*queue.Message) error {
	var errs []error
	for _, m := range msgs {
		if err := s.Retry(ctx, m, 0); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Retry publishes m again through a delay queue that sends it back to the queue after delay,
// with one more attempt counted, then acks the original. If the copy cannot be published, the
// original is nacked with requeue (it comes back at once) and the error returned. A message whose
// connection was lost since it was received was requeued by the broker: nothing is published.
func (s *Source) Retry(ctx context.Context, m *queue.Message, delay time.Duration) error {
	h, ok := s.settle(m)
	if !ok {
		return nil
	}
	headers := amqp091.Table{}
	for k, v := range h.d.Headers {
		if k != "x-death" && k != "x-delivery-count" && k != "x-first-death-exchange" && k != "x-first-death-queue" && k != "x-first-death-reason" {
			headers[k] = v
		}
	}
	headers[HeaderAttempts] = int64(m.ReceiveCount)
	headers[HeaderMessageID] = m.ID
	target := s.cfg.queue
	if delay >= time.Millisecond {
		target = delayQueue(s.cfg.queue, delay)
	}
	err := s.publish(ctx, h.gen, target, delay, amqp091.Publishing{Headers: headers, ContentType: h.d.ContentType, Body: h.d.Body,
		DeliveryMode: amqp091.Persistent, MessageId: h.d.MessageId, Timestamp: h.d.Timestamp})
	if errors.Is(err, errStale) {
		return nil // its connection was lost: the broker requeued it, and a copy would be a duplicate
	}
	if err != nil {
		if nerr := s.ackOrNack(h, false); nerr != nil {
			s.log.Debug("AMQP nack after a failed retry publish", "message_id", m.ID, "error", nerr)
		}
		return fmt.Errorf("amqp retry %s in %s: %w", m.ID, delay, err)
	}
	if err := s.ackOrNack(h, true); err != nil {
		return fmt.Errorf("amqp ack of %s after its retry copy was published: %w", m.ID, err)
	}
	return nil
}

// DeadLetter publishes m's body with why to the dead-letter queue (dlq=); it does not ack m. A
// message whose connection was lost since it was received is not published (the broker requeued
// it: it comes back, and would be dead-lettered twice): an error says so.
func (s *Source) DeadLetter(ctx context.Context, m *queue.Message, why queue.DeadLetter) error {
	if s.cfg.dlq == "" {
		return queue.ErrNoDeadLetterQueue
	}
	h, _ := m.Handle.(*delivery)
	p := amqp091.Publishing{DeliveryMode: amqp091.Persistent, Body: m.Body, MessageId: m.ID, Timestamp: time.Now(),
		Headers: amqp091.Table{HeaderError: why.Error, HeaderClass: why.Class, HeaderReceiveCount: int64(why.ReceiveCount),
			HeaderAttempts: int64(why.Attempts), HeaderMessageID: m.ID, "x-palleto-queue": s.cfg.queue}}
	if h != nil {
		p.ContentType = h.d.ContentType
	}
	var gen uint64 // a delivery's own connection only: one lost meanwhile requeued it, and it comes back
	if h != nil {
		gen = h.gen
	}
	if err := s.publish(ctx, gen, s.cfg.dlq, 0, p); err != nil {
		return fmt.Errorf("amqp dead-letter %s to %q: %w", m.ID, s.cfg.dlq, err)
	}
	return nil
}

// errStale is a publish for a delivery whose connection is gone (the broker requeued it).
var errStale = errors.New("the delivery's connection is gone")

// publish sends p to the queue named to (through the default exchange) and waits for the
// broker's confirm. A delay queue is declared the first time it is used on a connection. With
// gen other than 0, it publishes only on that connection, and returns errStale when it is gone.
func (s *Source) publish(ctx context.Context, gen uint64, to string, delay time.Duration, p amqp091.Publishing) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.callTimeout)
	defer cancel()
	s.mu.Lock()
	pub, conn, declared := s.pub, s.conn, s.delays[delay]
	connected := s.deliveries != nil
	stale := gen != 0 && gen != s.gen
	s.mu.Unlock()
	if stale {
		return errStale
	}
	if !connected {
		return errors.New("not connected")
	}
	if to != s.cfg.queue && to != s.cfg.dlq && !declared {
		err := s.deadline(conn, func() error {
			_, err := pub.QueueDeclare(to, true, false, false, false, amqp091.Table{
				"x-message-ttl": delay.Milliseconds(), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": s.cfg.queue})
			return err
		})
		if err != nil {
			return fmt.Errorf("declare delay queue %q: %w", to, err)
		}
		s.mu.Lock()
		if s.pub == pub {
			s.delays[delay] = true
		}
		s.mu.Unlock()
	}
	conf, err := pub.PublishWithDeferredConfirmWithContext(ctx, "", to, false, false, p)
	if err != nil {
		return err
	}
	acked, err := conf.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("no confirm from the broker: %w", err)
	}
	if !acked {
		return errors.New("the broker refused the message (nack)")
	}
	return nil
}

// Ready reports why the source cannot deliver, or nil.
func (s *Source) Ready(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deliveries == nil {
		return s.downErr
	}
	return nil
}

// Check makes sure, at start, that the queue (and the dead-letter queue) exist; its error names
// the queue and the vhost.
func (s *Source) Check(ctx context.Context) error {
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	if err := s.Ready(ctx); err != nil {
		return err
	}
	return s.deadline(conn, func() error {
		ch, err := conn.Channel()
		if err != nil {
			return fmt.Errorf("amqp channel: %w", err)
		}
		defer ch.Close()
		for _, q := range []string{s.cfg.queue, s.cfg.dlq} {
			if q == "" {
				continue
			}
			if _, err := ch.QueueDeclarePassive(q, true, false, false, false, nil); err != nil {
				return fmt.Errorf("source: amqp queue %q in vhost %q: %w", q, s.vh, err)
			}
		}
		return nil
	})
}

// Depth returns the queue's ready messages and the deliveries this consumer holds.
func (s *Source) Depth(ctx context.Context) (visible, inFlight int, err error) {
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	if err := s.Ready(ctx); err != nil {
		return 0, 0, err
	}
	err = s.deadline(conn, func() error {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		defer ch.Close()
		q, err := ch.QueueDeclarePassive(s.cfg.queue, true, false, false, false, nil)
		visible = q.Messages
		return err
	})
	return visible, int(s.held.Load()), err
}

// Close stops consuming and closes the connection: deliveries not acked go back to the queue.
func (s *Source) Close() {
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
	}
	s.deliveries = nil
	s.downErr = errSourceClosed
}

// errSourceClosed is the answer of a call after Close.
var errSourceClosed = errors.New("amqp: source closed")
