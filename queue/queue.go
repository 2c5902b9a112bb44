// Package queue is the seam between the daemon and where its work comes from: a Source of
// acknowledgeable messages. SQS is one Source (package sqs); a test fake is another. The daemon,
// the notification parsing, the S3 fetch and the processors never see which one they serve.
//
// The contract of a Source, which queuetest checks for every implementation:
//   - Receive returns at most max messages and never polls with no demand (max >= 1);
//   - a received message stays invisible to other consumers until it is deleted, retried or
//     released (the source keeps it alive: SQS extends its visibility timeout);
//   - Delete, Retry and Release stop that keep-alive, and wait for a renewal in flight, before
//     they change the message's state: a renewal never undoes a retry delay or a release;
//   - Delete is asynchronous (batched); Retry and Release return once the queue took the change.
package queue

import (
	"context"
	"errors"
	"time"
)

// Message is one received message. Body and the exported fields are the source's to set and the
// daemon's to read; Handle is the source's own (SQS: the receipt handle).
type Message struct {
	ID   string
	Body []byte
	// ReceiveCount is how often the queue has delivered it, 1 on the first delivery; 0 when the
	// transport does not count deliveries (Kafka): the daemon then reads the object's failure
	// records for the poison guard's count on every delivery.
	ReceiveCount int
	SentAt       time.Time // when it was sent to the queue, zero when unknown
	ReceivedAt   time.Time
	Handle       any
}

// DeadLetter is what a dead-letter queue is told about a message that failed for good.
type DeadLetter struct {
	Error        string // the cause
	Class        string // "permanent" or "permanent (max-receives)"
	ReceiveCount int
	Attempts     int // failures of the object's own, the poison guard's count
}

// ErrNoDeadLetterQueue is returned by DeadLetter when none is configured.
var ErrNoDeadLetterQueue = errors.New("no dead-letter queue configured")

// Source is a queue of acknowledgeable messages. Every method is safe for concurrent use.
type Source interface {
	// Receive returns at most max (>= 1) messages. It may block (a long poll) and may return
	// none; it returns promptly once ctx is done.
	Receive(ctx context.Context, max int) ([]*Message, error)
	// Delete removes m for good. Call it only once everything m asked for is durably done. It
	// does not wait: failures are logged (m then comes back, and is found already done).
	Delete(m *Message)
	// Retry makes m visible again after delay.
	Retry(ctx context.Context, m *Message, delay time.Duration) error
	// Release makes msgs, which were never worked on, visible again at once.
	Release(ctx context.Context, msgs []*Message) error
	// DeadLetter sends m to the dead-letter queue with why it failed; ErrNoDeadLetterQueue when
	// there is none. It does not delete m.
	DeadLetter(ctx context.Context, m *Message, why DeadLetter) error
	// Ready reports why the source cannot deliver, or nil.
	Ready(ctx context.Context) error
	// Close flushes pending deletes and stops the keep-alive. Messages still held then come
	// back when the queue's own timeout says so.
	Close()
}
