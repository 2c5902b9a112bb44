// Package sqs is Palleto's SQS adapter, a queue.Source: it receives messages (at most the
// demand, long polling), deletes them in batches once their results are durable, keeps
// in-flight messages invisible with a batched heartbeat, hands messages back (visibility 0) or
// delays them (a retry backoff), and sends dead letters. Each method makes the SQS calls, each
// with its own deadline, and says what their errors mean (errors.go); the engine owns
// concurrency and demand.
package sqs

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

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/palleto/palleto/queue"
)

// API is the part of the SQS client Palleto calls. *sqs.Client implements it.
type API interface {
	ReceiveMessage(context.Context, *awssqs.ReceiveMessageInput, ...func(*awssqs.Options)) (*awssqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(context.Context, *awssqs.DeleteMessageBatchInput, ...func(*awssqs.Options)) (*awssqs.DeleteMessageBatchOutput, error)
	ChangeMessageVisibilityBatch(context.Context, *awssqs.ChangeMessageVisibilityBatchInput, ...func(*awssqs.Options)) (*awssqs.ChangeMessageVisibilityBatchOutput, error)
	SendMessage(context.Context, *awssqs.SendMessageInput, ...func(*awssqs.Options)) (*awssqs.SendMessageOutput, error)
	GetQueueAttributes(context.Context, *awssqs.GetQueueAttributesInput, ...func(*awssqs.Options)) (*awssqs.GetQueueAttributesOutput, error)
}

// Config configures a Source.
type Config struct {
	QueueURL string
	// DLQURL, when set, is where DeadLetter sends messages that failed for good.
	DLQURL string
	// WaitTime is the long-poll wait of each ReceiveMessage (0 to 20s).
	WaitTime time.Duration
	// VisibilityTimeout is asked for on receive and renewed by the heartbeat at half of it.
	VisibilityTimeout time.Duration
	// DeleteLinger is how long a delete may wait for others to fill a batch of 10.
	DeleteLinger time.Duration
	// CallTimeout is the deadline of every SQS call but ReceiveMessage, whose deadline is
	// WaitTime plus this. 0 means the default (30s).
	CallTimeout time.Duration
}

// DefaultCallTimeout is the deadline of one SQS call (plus the wait time, for a receive).
const DefaultCallTimeout = 30 * time.Second

// DefaultConfig: 20s long polls, 60s visibility, 10ms delete linger, 30s per call.
func DefaultConfig() Config {
	return Config{WaitTime: 20 * time.Second, VisibilityTimeout: 60 * time.Second, DeleteLinger: 10 * time.Millisecond, CallTimeout: DefaultCallTimeout}
}

// Validate names the first bad setting, its value and its bound.
func (c Config) Validate() error {
	if err := CheckQueueURL("queue-url", c.QueueURL); err != nil {
		return err
	}
	return c.ValidateSettings()
}

// ValidateSettings is Validate without the queue URL: the settings --source needs checked
// whatever the source (the dead-letter queue, waits and timeouts).
func (c Config) ValidateSettings() error {
	if c.DLQURL != "" {
		if err := CheckQueueURL("dlq-url", c.DLQURL); err != nil {
			return err
		}
		if err := CheckDLQ(c.DLQURL, c.QueueURL); err != nil {
			return err
		}
	}
	switch {
	case c.WaitTime < 0 || c.WaitTime > 20*time.Second:
		return fmt.Errorf("wait-time: %s is out of range [0s, 20s]", c.WaitTime)
	case c.VisibilityTimeout < 2*time.Second || c.VisibilityTimeout > 12*time.Hour:
		return fmt.Errorf("visibility-timeout: %s is out of range [2s, 12h]", c.VisibilityTimeout)
	case c.DeleteLinger < 0 || c.DeleteLinger > time.Second:
		return fmt.Errorf("delete-linger: %s is out of range [0s, 1s]", c.DeleteLinger)
	case c.CallTimeout != 0 && (c.CallTimeout < time.Second || c.CallTimeout > 10*time.Minute):
		return fmt.Errorf("sqs-timeout: %s is out of range [1s, 10m]", c.CallTimeout)
	}
	return nil
}

// CheckQueueURL says what is wrong with a queue URL: it must be http(s)://host/ACCOUNT/NAME, as
// SQS gives them (http for local servers).
func CheckQueueURL(name, v string) error {
	const example = "e.g. https://sqs.us-east-1.amazonaws.com/123456789012/uploads"
	if v == "" {
		return fmt.Errorf("%s: required (the SQS queue to consume, %s)", name, example)
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.Trim(u.Path, "/") == "" {
		return fmt.Errorf("%s: %q is not a queue URL (http(s)://host/ACCOUNT/NAME, %s)", name, v, example)
	}
	return nil
}

func (c Config) callTimeout() time.Duration {
	if c.CallTimeout == 0 {
		return DefaultCallTimeout
	}
	return c.CallTimeout
}

// Hooks let the caller see what the source does. Every field is optional; they are called from
// several goroutines.
type Hooks struct {
	Trace      func(format string, args ...any)
	Received   func(n int)
	Deleted    func(n int)
	Extended   func(n int)
	DeleteFail func(m *queue.Message, err error)
}

// Source receives, deletes and keeps alive messages of one queue. Safe for concurrent use.
type Source struct {
	api   API
	cfg   Config
	log   *slog.Logger
	hooks Hooks

	hb      *heartbeat
	dmu     sync.RWMutex        // guards deletes against Close: a delete after Close is dropped
	deletes chan *queue.Message // buffered: see New; nil once closed
	wg      sync.WaitGroup
	stop    context.CancelFunc
	once    sync.Once
}

var _ queue.Source = (*Source)(nil)

// New starts a Source's heartbeat and delete batcher. Call Close to flush and stop them.
func New(api API, cfg Config, log *slog.Logger, hooks Hooks) *Source {
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Source{api: api, cfg: cfg, log: log, hooks: hooks, stop: cancel,
		// Buffered so that a worker hands over a delete and goes on; sized for many full batches.
		deletes: make(chan *queue.Message, 1024)}
	s.hb = newHeartbeat(s)
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.hb.run(ctx) }()
	deletes := s.deletes
	go func() { defer s.wg.Done(); s.runDeleter(deletes) }()
	return s
}

func (s *Source) trace(format string, args ...any) {
	if s.hooks.Trace != nil {
		s.hooks.Trace(format, args...)
	}
}

// call runs one SQS call under its deadline.
func (s *Source) call(ctx context.Context, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.callTimeout())
	defer cancel()
	return f(ctx)
}

// Depth returns the queue's approximate visible and in-flight message counts.
func (s *Source) Depth(ctx context.Context) (visible, inFlight int, err error) {
	return s.depth(ctx, s.cfg.QueueURL)
}

func (s *Source) depth(ctx context.Context, url string) (visible, inFlight int, err error) {
	var out *awssqs.GetQueueAttributesOutput
	err = s.call(ctx, func(ctx context.Context) (err error) {
		out, err = s.api.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{QueueUrl: &url,
			AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("sqs GetQueueAttributes %s: %w", url, err)
	}
	visible, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	inFlight, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible, inFlight, nil
}

// Ready is the readiness check: an error means the queue cannot be reached (or does not exist).
func (s *Source) Ready(ctx context.Context) error {
	_, _, err := s.Depth(ctx)
	return err
}

// Check is the check at start: the queue, and the dead-letter queue when one is set, exist and
// may be read. Its error names the setting (queue-url, dlq-url) and says what SQS answered.
func (s *Source) Check(ctx context.Context) error {
	for _, q := range []struct{ name, url string }{{"queue-url", s.cfg.QueueURL}, {"dlq-url", s.cfg.DLQURL}} {
		if q.url == "" {
			continue
		}
		if _, _, err := s.depth(ctx, q.url); err != nil {
			return fmt.Errorf("%s: %w%s", q.name, err, Hint(err))
		}
	}
	return nil
}

// Receive asks SQS for at most max (<= 10) messages, long polling for up to WaitTime. Received
// messages are kept invisible by the heartbeat until Delete, Retry or Release.
func (s *Source) Receive(ctx context.Context, max int) ([]*queue.Message, error) {
	max = min(max, 10)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WaitTime+s.cfg.callTimeout())
	defer cancel()
	sent := time.Now() // the visibility of what is received runs from some time after this
	out, err := s.api.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{
		QueueUrl:                    &s.cfg.QueueURL,
		MaxNumberOfMessages:         int32(max),
		WaitTimeSeconds:             int32(s.cfg.WaitTime / time.Second),
		VisibilityTimeout:           int32(s.cfg.VisibilityTimeout / time.Second),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount, types.MessageSystemAttributeNameSentTimestamp},
		// The deprecated spelling too: older servers and emulators (local-aws-sqs) read only it.
		AttributeNames: []types.QueueAttributeName{"ApproximateReceiveCount", "SentTimestamp"},
		// No message attributes: nothing reads them, and each one received is parsed and checksummed.
	})
	if err != nil {
		return nil, fmt.Errorf("sqs ReceiveMessage %s: %w", s.cfg.QueueURL, err)
	}
	now := time.Now()
	msgs := make([]*queue.Message, 0, len(out.Messages))
	for _, m := range out.Messages {
		msg := &queue.Message{ID: aws.ToString(m.MessageId), Handle: aws.ToString(m.ReceiptHandle), Body: []byte(aws.ToString(m.Body)), ReceivedAt: now, ReceiveCount: 1}
		if v, err := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]); err == nil {
			msg.ReceiveCount = v
		}
		if v, err := strconv.ParseInt(m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
			msg.SentAt = time.UnixMilli(v)
		}
		msgs = append(msgs, msg)
		s.hb.track(msg, sent)
	}
	if s.hooks.Received != nil && len(msgs) > 0 {
		s.hooks.Received(len(msgs))
	}
	return msgs, nil
}

func receipt(m *queue.Message) *string {
	h, _ := m.Handle.(string)
	return aws.String(h)
}

// Delete stops m's heartbeat (waiting for a beat in flight) and queues m for a
// DeleteMessageBatch. Call it only once m's results are durable. It does not wait for the
// delete; failures go to Hooks.DeleteFail and the log (the message then comes back, and its
// existing result makes that cheap).
func (s *Source) Delete(m *queue.Message) {
	s.hb.untrack(m)
	s.dmu.RLock()
	defer s.dmu.RUnlock()
	if s.deletes == nil { // after Close (a worker the hard stop left behind): m comes back by its timeout
		s.log.Warn("delete after the source was closed; the message comes back and is found done", "message_id", m.ID)
		return
	}
	s.deletes <- m
}

// Retry stops m's heartbeat (waiting for a beat in flight) and makes m visible again after delay.
func (s *Source) Retry(ctx context.Context, m *queue.Message, delay time.Duration) error {
	s.hb.untrack(m)
	return s.changeVisibility(ctx, []*queue.Message{m}, delay)
}

// Release hands messages that were never started back to the queue at once (visibility 0).
func (s *Source) Release(ctx context.Context, msgs []*queue.Message) error {
	for _, m := range msgs {
		s.hb.untrack(m)
	}
	s.trace("sqs: releasing %d unstarted messages (visibility 0)", len(msgs))
	return s.changeVisibility(ctx, msgs, 0)
}

// DeadLetter sends m's body to the DLQ, with the cause, its class, the receive count, the
// attempts (failures of the object's own), the source queue and the message ID in message
// attributes.
func (s *Source) DeadLetter(ctx context.Context, m *queue.Message, why queue.DeadLetter) error {
	if s.cfg.DLQURL == "" {
		return queue.ErrNoDeadLetterQueue
	}
	attr := func(v string) types.MessageAttributeValue {
		return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(truncate(v, 1024))}
	}
	err := s.call(ctx, func(ctx context.Context) error {
		_, err := s.api.SendMessage(ctx, &awssqs.SendMessageInput{
			QueueUrl:    &s.cfg.DLQURL,
			MessageBody: aws.String(string(m.Body)),
			MessageAttributes: map[string]types.MessageAttributeValue{
				"palleto_error":         attr(why.Error),
				"palleto_class":         attr(why.Class),
				"palleto_receive_count": {DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(why.ReceiveCount))},
				"palleto_attempts":      {DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(why.Attempts))},
				"palleto_source_queue":  attr(s.cfg.QueueURL),
				"palleto_message_id":    attr(m.ID),
			},
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("sqs SendMessage (dead letter) %s: %w", s.cfg.DLQURL, err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "...(truncated)"
}

// InFlight is the number of received messages not yet deleted, retried or released.
func (s *Source) InFlight() int { return s.hb.len() }

// Close flushes pending deletes and stops the heartbeat. Messages still tracked then are left to
// their visibility timeout.
func (s *Source) Close() {
	s.once.Do(func() {
		s.dmu.Lock()
		close(s.deletes)
		s.deletes = nil
		s.dmu.Unlock()
		s.stop()
		s.wg.Wait()
	})
}

func (s *Source) changeVisibility(ctx context.Context, msgs []*queue.Message, d time.Duration) error {
	var errs []error
	s.visibilityBatches(ctx, msgs, d, func(chunk []*queue.Message, failed []types.BatchResultErrorEntry, err error) {
		if err != nil {
			errs = append(errs, err)
			return
		}
		for _, f := range failed {
			i, _ := strconv.Atoi(aws.ToString(f.Id))
			errs = append(errs, fmt.Errorf("sqs ChangeMessageVisibility %s: %s: %s", chunk[min(max(i, 0), len(chunk)-1)].ID, aws.ToString(f.Code), aws.ToString(f.Message)))
		}
	})
	return errors.Join(errs...)
}

// visibilityBatches sets the visibility of msgs to d, 10 per ChangeMessageVisibilityBatch, each
// call under its own deadline, and reports each call's outcome to done (entry Ids are indexes
// into chunk).
func (s *Source) visibilityBatches(ctx context.Context, msgs []*queue.Message, d time.Duration, done func(chunk []*queue.Message, failed []types.BatchResultErrorEntry, err error)) {
	for start := 0; start < len(msgs); start += 10 {
		chunk := msgs[start:min(start+10, len(msgs))]
		entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(chunk))
		for i, m := range chunk {
			entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: receipt(m), VisibilityTimeout: int32(d / time.Second)}
		}
		var out *awssqs.ChangeMessageVisibilityBatchOutput
		err := s.call(ctx, func(ctx context.Context) (err error) {
			out, err = s.api.ChangeMessageVisibilityBatch(ctx, &awssqs.ChangeMessageVisibilityBatchInput{QueueUrl: &s.cfg.QueueURL, Entries: entries})
			return err
		})
		if err != nil {
			done(chunk, nil, fmt.Errorf("sqs ChangeMessageVisibilityBatch %s: %w", s.cfg.QueueURL, err))
			continue
		}
		done(chunk, out.Failed, nil)
	}
}

// deletesInFlight is how many DeleteMessageBatch calls may run at once: one call takes a round
// trip (10-20 ms), so one at a time would cap deletes at 500-1,000 messages a second.
const deletesInFlight = 4

// runDeleter batches deletes: up to 10 per DeleteMessageBatch, waiting at most DeleteLinger for
// a batch to fill, with up to deletesInFlight calls at once. It returns once deletes is closed
// and drained and every call has returned.
func (s *Source) runDeleter(deletes <-chan *queue.Message) {
	var batch []*queue.Message
	var linger <-chan time.Time
	// deletesInFlight callers live as long as the deleter (a goroutine per call would grow its
	// stack through the SDK on every batch); a batch waits while all of them are busy.
	var calls sync.WaitGroup
	batches := make(chan []*queue.Message)
	for range deletesInFlight {
		calls.Add(1)
		go func() {
			defer calls.Done()
			for b := range batches {
				s.deleteBatch(b)
			}
		}()
	}
	defer calls.Wait()
	defer close(batches)
	flush := func() {
		if len(batch) > 0 {
			batches <- batch
			batch = make([]*queue.Message, 0, 10)
		}
		linger = nil
	}
	for {
		select {
		case m, ok := <-deletes:
			if !ok {
				flush()
				return
			}
			batch = append(batch, m)
			if len(batch) == 10 {
				flush()
			} else if linger == nil {
				linger = time.After(s.cfg.DeleteLinger)
			}
		case <-linger:
			flush()
		}
	}
}

func (s *Source) deleteBatch(batch []*queue.Message) {
	entries := make([]types.DeleteMessageBatchRequestEntry, len(batch))
	for i, m := range batch {
		entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: receipt(m)}
	}
	// Deletes run after the results are durable; they get their own deadline, not the caller's.
	var out *awssqs.DeleteMessageBatchOutput
	err := s.call(context.Background(), func(ctx context.Context) (err error) {
		out, err = s.api.DeleteMessageBatch(ctx, &awssqs.DeleteMessageBatchInput{QueueUrl: &s.cfg.QueueURL, Entries: entries})
		return err
	})
	if err != nil {
		err = fmt.Errorf("sqs DeleteMessageBatch %s: %w", s.cfg.QueueURL, err)
		for _, m := range batch {
			s.deleteFailed(m, err)
		}
		return
	}
	for _, f := range out.Failed {
		i, _ := strconv.Atoi(aws.ToString(f.Id))
		if i >= 0 && i < len(batch) {
			s.deleteFailed(batch[i], fmt.Errorf("sqs DeleteMessage %s: %s: %s", batch[i].ID, aws.ToString(f.Code), aws.ToString(f.Message)))
		}
	}
	ok := len(batch) - len(out.Failed)
	if ok > 0 {
		s.trace("sqs: deleted %d messages in one batch", ok)
		if s.hooks.Deleted != nil {
			s.hooks.Deleted(ok)
		}
	}
}

func (s *Source) deleteFailed(m *queue.Message, err error) {
	s.log.Warn("delete failed; the message will be redelivered and skipped as already done", "message_id", m.ID, "error", err)
	if s.hooks.DeleteFail != nil {
		s.hooks.DeleteFail(m, err)
	}
}
