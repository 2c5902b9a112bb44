// Package nats is Palleto's NATS JetStream source, a queue.Source registered for nats:// URLs:
//
//	nats://HOST:PORT/STREAM/CONSUMER[?subject=S&dlq=SUBJECT&creds=FILE&token=T&tls=true]
//
// It consumes a durable pull consumer with explicit acks, which several Palleto processes may
// share. Receive fetches at most the unmet demand (a no-wait fetch first, then a long poll for
// one message of at most the wait time); a held message is kept alive with InProgress at a
// third of the consumer's AckWait; Delete is an Ack (Term after a dead letter), sent by an acker
// off the caller's goroutine and flushed by Close; Retry is a Nak with a delay, Release a Nak
// without; the delivery count is the message's NumDelivered; DeadLetter publishes the body and
// the reason (headers) to the dlq subject through JetStream. With subject= the stream and the
// consumer are created when missing. A lost connection is a failure of the world: the client
// reconnects with backoff for as long as it takes, and Ready says why meanwhile.
package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/palleto/palleto/queue"
)

// Name is the source's name in the registry, in metrics and in the log.
const Name = "nats"

func init() { queue.Register("nats", Name, nil, Open) }

// The acknowledgement bodies of JetStream's protocol.
var (
	ackAck      = []byte("+ACK")
	ackNak      = []byte("-NAK")
	ackProgress = []byte("+WPI")
	ackTerm     = []byte("+TERM")
)

// DefaultAckWait is the AckWait of a consumer Palleto creates when the daemon gives none.
const DefaultAckWait = 30 * time.Second

// Source consumes one durable pull consumer. Safe for concurrent use.
type Source struct {
	cfg   Config
	name  string // STREAM/CONSUMER, for errors and the log
	log   *slog.Logger
	trace func(format string, args ...any)
	wait  time.Duration // the longest a Receive long-polls
	call  time.Duration // the deadline of every other call
	nc    *natsio.Conn
	js    jetstream.JetStream
	cons  jetstream.Consumer
	// ackWait is the consumer's AckWait: a held message is renewed at a third of it.
	ackWait time.Duration

	ka     *keepAlive
	acks   *acker
	once   sync.Once
	connMu sync.Mutex
	down   time.Time // since when the connection is lost; zero while connected
	cause  error     // why it was lost
}

var (
	_ queue.Source  = (*Source)(nil)
	_ queue.Depther = (*Source)(nil)
	_ queue.Checker = (*Source)(nil)
)

// held is a received message's Handle.
type held struct {
	msg  jetstream.Msg
	mu   sync.Mutex
	dead bool // dead-lettered: Delete terms it instead of acking it
}

func handle(m *queue.Message) *held {
	h, _ := m.Handle.(*held)
	if h == nil {
		panic("nats: a message this source did not receive")
	}
	return h
}

// Open is the registry's opener: it connects, finds (or, with subject=, creates) the stream and
// the consumer, and starts the keep-alive and the acker. Call Close to stop them.
func Open(ctx context.Context, u *url.URL, opts queue.Options) (queue.Source, error) {
	cfg, err := ParseURL(u)
	if err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, name: cfg.Stream + "/" + cfg.Consumer, log: opts.Logger, trace: opts.Trace, wait: opts.WaitTime, call: opts.CallTimeout}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.trace == nil {
		s.trace = func(string, ...any) {}
	}
	if s.call <= 0 {
		s.call = 30 * time.Second
	}
	s.nc, err = natsio.Connect(strings.Join(cfg.Servers, ","), s.connectOptions()...)
	if err != nil {
		return nil, fmt.Errorf("nats connect %s: %w", strings.Join(cfg.Servers, ","), err)
	}
	s.js, err = jetstream.New(s.nc)
	if err == nil {
		ackWait := opts.AckTimeout
		if ackWait <= 0 {
			ackWait = DefaultAckWait
		}
		bctx, cancel := context.WithTimeout(ctx, s.call)
		err = s.bind(bctx, ackWait, opts.MaxInFlight)
		cancel()
	}
	if err != nil {
		s.nc.Close()
		return nil, err
	}
	s.ka = newKeepAlive(s)
	s.acks = newAcker(s)
	return s, nil
}

// Receive fetches at most max messages: those waiting at once, or else, long polling for up to
// the wait time, the first to come and those waiting behind it. It never asks for none.
func (s *Source) Receive(ctx context.Context, max int) ([]*queue.Message, error) {
	if max < 1 {
		return nil, nil
	}
	if err := s.connected(); err != nil {
		return nil, err
	}
	msgs, err := s.fetch(ctx, max, 0)
	if len(msgs) > 0 || err != nil || s.wait <= 0 || ctx.Err() != nil {
		return msgs, err
	}
	msgs, err = s.fetch(ctx, 1, s.wait)
	if len(msgs) == 1 && max > 1 && err == nil && ctx.Err() == nil {
		more, err := s.fetch(ctx, max-1, 0)
		return append(msgs, more...), err
	}
	return msgs, err
}

// fetch is one pull request for n messages: no-wait when wait is 0. Every message that arrived
// is returned and held, even when ctx ended the request.
func (s *Source) fetch(ctx context.Context, n int, wait time.Duration) ([]*queue.Message, error) {
	var batch jetstream.MessageBatch
	var err error
	if wait <= 0 {
		batch, err = s.cons.FetchNoWait(n)
	} else {
		wctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		batch, err = s.cons.Fetch(n, jetstream.FetchContext(wctx))
	}
	if err != nil {
		return nil, fmt.Errorf("nats fetch %s: %w", s.name, err)
	}
	var out []*queue.Message
	for m := range batch.Messages() {
		out = append(out, s.message(m))
	}
	if len(out) > 0 {
		s.trace("nats: fetched %d of %d messages from %s", len(out), n, s.name)
	}
	err = batch.Error()
	if len(out) == 0 && ctx.Err() == nil {
		if cerr := s.connected(); cerr != nil {
			return nil, cerr // the connection went during the fetch: an outage, not an empty queue
		}
	}
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrBatchCompleted) {
		return out, nil // the wait ended: a long poll that found nothing, or a stop
	}
	if msg := strings.ToLower(err.Error()); strings.Contains(msg, "exceeded maxackpending") || strings.Contains(msg, "exceeded maxwaiting") {
		return out, nil // the consumer's limits: the messages it lets out are all held (by this or other processes)
	}
	return out, fmt.Errorf("nats fetch %s: %w", s.name, err)
}

func (s *Source) message(m jetstream.Msg) *queue.Message {
	qm := &queue.Message{Body: m.Data(), ReceivedAt: time.Now(), ReceiveCount: 1, Handle: &held{msg: m}}
	if md, err := m.Metadata(); err == nil {
		qm.ID = md.Stream + ":" + strconv.FormatUint(md.Sequence.Stream, 10)
		qm.ReceiveCount = int(md.NumDelivered)
		qm.SentAt = md.Timestamp
	} else {
		qm.ID = m.Reply()
	}
	s.ka.track(qm)
	return qm
}

// ack sends one acknowledgement of m and waits for the server's answer, under the call deadline.
func (s *Source) ack(ctx context.Context, m *queue.Message, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.call)
	defer cancel()
	if _, err := s.nc.RequestWithContext(ctx, handle(m).msg.Reply(), body); err != nil {
		return fmt.Errorf("nats %s %s of %s: %w", strings.Fields(string(body))[0], m.ID, s.name, err)
	}
	return nil
}

// Delete stops m's keep-alive (waiting for a renewal in flight) and hands m to the acker: an
// Ack, or a Term when m was dead-lettered. It does not wait for the ack.
func (s *Source) Delete(m *queue.Message) {
	s.ka.untrack(m)
	s.acks.add(m)
}

// Retry stops m's keep-alive and naks it with delay: the server delivers it again after delay.
func (s *Source) Retry(ctx context.Context, m *queue.Message, delay time.Duration) error {
	s.ka.untrack(m)
	if err := s.connected(); err != nil {
		return err
	}
	body := ackNak
	if delay > 0 {
		body = fmt.Appendf(nil, "%s {\"delay\": %d}", ackNak, delay.Nanoseconds())
	}
	s.trace("nats: message %s naked, delivered again in %s", m.ID, delay)
	return s.ack(ctx, m, body)
}

// Release stops the keep-alive of msgs and naks them without delay: delivered again at once.
func (s *Source) Release(ctx context.Context, msgs []*queue.Message) error {
	for _, m := range msgs {
		s.ka.untrack(m)
	}
	if err := s.connected(); err != nil {
		return err
	}
	s.trace("nats: releasing %d unstarted messages (nak)", len(msgs))
	var errs []error
	for _, m := range msgs {
		if err := s.ack(ctx, m, ackNak); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// DeadLetter publishes m's body to the dlq subject through JetStream (a stream must capture it),
// with the cause, its class, the delivery count, the attempts, the source and the message ID
// in headers, and a Nats-Msg-Id that makes a second dead letter of the same message a
// duplicate. The Delete that follows terms m instead of acking it.
func (s *Source) DeadLetter(ctx context.Context, m *queue.Message, why queue.DeadLetter) error {
	if s.cfg.DLQ == "" {
		return queue.ErrNoDeadLetterQueue
	}
	if err := s.connected(); err != nil {
		return err
	}
	msg := natsio.NewMsg(s.cfg.DLQ)
	msg.Data = m.Body
	msg.Header.Set("Palleto-Error", headerValue(why.Error))
	msg.Header.Set("Palleto-Class", headerValue(why.Class))
	msg.Header.Set("Palleto-Receive-Count", strconv.Itoa(why.ReceiveCount))
	msg.Header.Set("Palleto-Attempts", strconv.Itoa(why.Attempts))
	msg.Header.Set("Palleto-Source", s.name)
	msg.Header.Set("Palleto-Message-Id", m.ID)
	msg.Header.Set(jetstream.MsgIDHeader, "palleto-dead-letter-"+m.ID)
	ctx, cancel := context.WithTimeout(ctx, s.call)
	defer cancel()
	if _, err := s.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("nats publish (dead letter) %s: %w", s.cfg.DLQ, err)
	}
	h := handle(m)
	h.mu.Lock()
	h.dead = true
	h.mu.Unlock()
	return nil
}

// headerValue is v on one line (a header cannot hold a line break), at most 1 KiB.
func headerValue(v string) string {
	v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	if len(v) > 1024 {
		v = v[:1024] + "...(truncated)"
	}
	return v
}

// Ready is nil while the connection is up and the consumer answers; else it says why.
func (s *Source) Ready(ctx context.Context) error {
	if err := s.connected(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.call)
	defer cancel()
	if _, err := s.cons.Info(ctx); err != nil {
		if cerr := s.connected(); cerr != nil {
			return cerr // lost meanwhile: that is why
		}
		return fmt.Errorf("nats consumer %s does not answer: %w", s.name, err)
	}
	return nil
}

// Check is the check at start: the consumer answers, and a stream captures the dlq subject.
// Its error names the setting at fault.
func (s *Source) Check(ctx context.Context) error {
	if err := s.Ready(ctx); err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if s.cfg.DLQ != "" {
		ctx, cancel := context.WithTimeout(ctx, s.call)
		defer cancel()
		if _, err := s.js.StreamNameBySubject(ctx, s.cfg.DLQ); err != nil {
			return fmt.Errorf("dlq: no stream captures the subject %q (add it to a stream's subjects, or give subject= to let palleto create the stream): %w", s.cfg.DLQ, err)
		}
	}
	return nil
}

// Depth returns the consumer's messages not yet delivered (NumPending) and those delivered and
// not yet acknowledged (NumAckPending), by every process that shares it.
func (s *Source) Depth(ctx context.Context) (visible, inFlight int, err error) {
	if err := s.connected(); err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.call)
	defer cancel()
	info, err := s.cons.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("nats consumer %s: %w", s.name, err)
	}
	return int(info.NumPending), info.NumAckPending, nil
}

// InFlight is the number of received messages not yet deleted, retried or released.
func (s *Source) InFlight() int { return s.ka.len() }

// Close flushes the pending acks, stops the keep-alive and closes the connection. Messages
// still held come back when the consumer's AckWait has passed.
func (s *Source) Close() {
	s.once.Do(func() {
		s.acks.close()
		s.ka.close()
		if s.nc.IsConnected() {
			ctx, cancel := context.WithTimeout(context.Background(), s.call)
			s.nc.FlushWithContext(ctx)
			cancel()
		}
		s.nc.Close()
	})
}
