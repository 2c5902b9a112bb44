// Package sqs is Palleto's SQS adapter: it receives messages for the engine (at most the demand,
// long polling), deletes them in batches once their results are durable, keeps in-flight
// messages invisible with a batched heartbeat, and hands messages back (visibility 0) or delays
// them (a retry backoff). Each method makes the SQS calls and classifies their errors; the engine
// owns concurrency and demand.
package sqs

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
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
	// WaitTime is the long-poll wait of each ReceiveMessage (0 to 20s).
	WaitTime time.Duration
	// VisibilityTimeout is asked for on receive and renewed by the heartbeat at half of it.
	VisibilityTimeout time.Duration
	// DeleteLinger is how long a delete may wait for others to fill a batch of 10.
	DeleteLinger time.Duration
}

// DefaultConfig: 20s long polls, 60s visibility, 10ms delete linger.
func DefaultConfig() Config {
	return Config{WaitTime: 20 * time.Second, VisibilityTimeout: 60 * time.Second, DeleteLinger: 10 * time.Millisecond}
}

// Validate names the first bad setting, its value and its bound.
func (c Config) Validate() error {
	switch {
	case c.QueueURL == "":
		return fmt.Errorf("queue-url: required (the SQS queue to consume, e.g. https://sqs.us-east-1.amazonaws.com/123456789012/uploads)")
	case c.WaitTime < 0 || c.WaitTime > 20*time.Second:
		return fmt.Errorf("wait-time: %s is out of range [0s, 20s]", c.WaitTime)
	case c.VisibilityTimeout < 2*time.Second || c.VisibilityTimeout > 12*time.Hour:
		return fmt.Errorf("visibility-timeout: %s is out of range [2s, 12h]", c.VisibilityTimeout)
	case c.DeleteLinger < 0 || c.DeleteLinger > time.Second:
		return fmt.Errorf("delete-linger: %s is out of range [0s, 1s]", c.DeleteLinger)
	}
	return nil
}

// Message is one received SQS message.
type Message struct {
	ID            string
	ReceiptHandle string
	Body          []byte
	ReceiveCount  int       // ApproximateReceiveCount, 1 on first delivery
	SentAt        time.Time // SentTimestamp
	ReceivedAt    time.Time
}

// Hooks let the caller see what the source does. Every field is optional; they are called from
// several goroutines.
type Hooks struct {
	Trace      func(format string, args ...any)
	Received   func(n int)
	Deleted    func(n int)
	Extended   func(n int)
	DeleteFail func(m *Message, err error)
}

// Source receives, deletes and keeps alive messages of one queue. Safe for concurrent use.
type Source struct {
	api   API
	cfg   Config
	log   *slog.Logger
	hooks Hooks

	hb      *heartbeat
	deletes chan *Message // buffered: see New
	wg      sync.WaitGroup
	stop    context.CancelFunc
	once    sync.Once
}

// New starts a Source's heartbeat and delete batcher. Call Close to flush and stop them.
func New(api API, cfg Config, log *slog.Logger, hooks Hooks) *Source {
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Source{api: api, cfg: cfg, log: log, hooks: hooks, stop: cancel,
		// Buffered so that a worker hands over a delete and goes on; sized for many full batches.
		deletes: make(chan *Message, 1024)}
	s.hb = newHeartbeat(s)
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.hb.run(ctx) }()
	go func() { defer s.wg.Done(); s.runDeleter() }()
	return s
}

func (s *Source) trace(format string, args ...any) {
	if s.hooks.Trace != nil {
		s.hooks.Trace(format, args...)
	}
}

// Depth returns the queue's approximate visible and in-flight message counts. It is also the
// readiness check: an error means the queue cannot be reached (or does not exist).
func (s *Source) Depth(ctx context.Context) (visible, inFlight int, err error) {
	out, err := s.api.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{QueueUrl: &s.cfg.QueueURL,
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	if err != nil {
		return 0, 0, fmt.Errorf("sqs GetQueueAttributes %s: %w", s.cfg.QueueURL, err)
	}
	visible, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	inFlight, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible, inFlight, nil
}

// Receive asks SQS for at most max (<= 10) messages, long polling for up to WaitTime. Received
// messages are kept invisible by the heartbeat until Delete, Retry or Release.
func (s *Source) Receive(ctx context.Context, max int) ([]*Message, error) {
	max = min(max, 10)
	out, err := s.api.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{
		QueueUrl:                    &s.cfg.QueueURL,
		MaxNumberOfMessages:         int32(max),
		WaitTimeSeconds:             int32(s.cfg.WaitTime / time.Second),
		VisibilityTimeout:           int32(s.cfg.VisibilityTimeout / time.Second),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount, types.MessageSystemAttributeNameSentTimestamp},
		// The deprecated spelling too: older servers and emulators (local-aws-sqs) read only it.
		AttributeNames:        []types.QueueAttributeName{"ApproximateReceiveCount", "SentTimestamp"},
		MessageAttributeNames: []string{"All"},
	})
	if err != nil {
		return nil, fmt.Errorf("sqs ReceiveMessage %s: %w", s.cfg.QueueURL, err)
	}
	now := time.Now()
	msgs := make([]*Message, 0, len(out.Messages))
	for _, m := range out.Messages {
		msg := &Message{ID: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle), Body: []byte(aws.ToString(m.Body)), ReceivedAt: now, ReceiveCount: 1}
		if v, err := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]); err == nil {
			msg.ReceiveCount = v
		}
		if v, err := strconv.ParseInt(m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
			msg.SentAt = time.UnixMilli(v)
		}
		msgs = append(msgs, msg)
		s.hb.track(msg)
	}
	if s.hooks.Received != nil && len(msgs) > 0 {
		s.hooks.Received(len(msgs))
	}
	return msgs, nil
}

// Delete stops m's heartbeat and queues it for a DeleteMessageBatch. Call it only once m's
// results are durable. It does not wait for the delete; failures go to Hooks.DeleteFail and the
// log (the message then comes back, and its existing result makes that cheap).
func (s *Source) Delete(m *Message) {
	s.hb.untrack(m)
	s.deletes <- m
}

// Retry stops m's heartbeat and makes it visible again after delay (a retry backoff).
func (s *Source) Retry(ctx context.Context, m *Message, delay time.Duration) error {
	s.hb.untrack(m)
	return s.changeVisibility(ctx, []*Message{m}, delay)
}

// Release hands messages that were never started back to the queue at once (visibility 0).
func (s *Source) Release(ctx context.Context, msgs []*Message) error {
	for _, m := range msgs {
		s.hb.untrack(m)
	}
	s.trace("sqs: releasing %d unstarted messages (visibility 0)", len(msgs))
	return s.changeVisibility(ctx, msgs, 0)
}

// InFlight is the number of received messages not yet deleted, retried or released.
func (s *Source) InFlight() int { return s.hb.len() }

// Close flushes pending deletes and stops the heartbeat. Messages still tracked then are left to
// their visibility timeout.
func (s *Source) Close() {
	s.once.Do(func() {
		close(s.deletes)
		s.stop()
		s.wg.Wait()
	})
}

func (s *Source) changeVisibility(ctx context.Context, msgs []*Message, d time.Duration) error {
	var firstErr error
	s.visibilityBatches(ctx, msgs, d, func(chunk []*Message, failed []types.BatchResultErrorEntry, err error) {
		if firstErr != nil {
			return
		}
		if err != nil {
			firstErr = err
		} else if len(failed) > 0 {
			i, _ := strconv.Atoi(aws.ToString(failed[0].Id))
			firstErr = fmt.Errorf("sqs ChangeMessageVisibility %s: %s: %s", chunk[min(i, len(chunk)-1)].ID, aws.ToString(failed[0].Code), aws.ToString(failed[0].Message))
		}
	})
	return firstErr
}

// visibilityBatches sets the visibility of msgs to d, 10 per ChangeMessageVisibilityBatch, and
// reports each call's outcome to done (entry Ids are indexes into chunk).
func (s *Source) visibilityBatches(ctx context.Context, msgs []*Message, d time.Duration, done func(chunk []*Message, failed []types.BatchResultErrorEntry, err error)) {
	for start := 0; start < len(msgs); start += 10 {
		chunk := msgs[start:min(start+10, len(msgs))]
		entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(chunk))
		for i, m := range chunk {
			entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(m.ReceiptHandle), VisibilityTimeout: int32(d / time.Second)}
		}
		out, err := s.api.ChangeMessageVisibilityBatch(ctx, &awssqs.ChangeMessageVisibilityBatchInput{QueueUrl: &s.cfg.QueueURL, Entries: entries})
		if err != nil {
			done(chunk, nil, fmt.Errorf("sqs ChangeMessageVisibilityBatch %s: %w", s.cfg.QueueURL, err))
			continue
		}
		done(chunk, out.Failed, nil)
	}
}

// runDeleter batches deletes: up to 10 per DeleteMessageBatch, waiting at most DeleteLinger for
// a batch to fill. It returns once s.deletes is closed and drained.
func (s *Source) runDeleter() {
	var batch []*Message
	var linger <-chan time.Time
	flush := func() {
		if len(batch) > 0 {
			s.deleteBatch(batch)
			batch = batch[:0]
		}
		linger = nil
	}
	for {
		select {
		case m, ok := <-s.deletes:
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

func (s *Source) deleteBatch(batch []*Message) {
	entries := make([]types.DeleteMessageBatchRequestEntry, len(batch))
	for i, m := range batch {
		entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(m.ReceiptHandle)}
	}
	// Deletes run after the results are durable; they get their own deadline, not the caller's.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := s.api.DeleteMessageBatch(ctx, &awssqs.DeleteMessageBatchInput{QueueUrl: &s.cfg.QueueURL, Entries: entries})
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

func (s *Source) deleteFailed(m *Message, err error) {
	s.log.Warn("delete failed; the message will be redelivered and skipped as already done", "message_id", m.ID, "error", err)
	if s.hooks.DeleteFail != nil {
		s.hooks.DeleteFail(m, err)
	}
}
