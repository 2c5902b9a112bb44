package sqs

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/palleto/palleto/queue"
)

// heartbeatCalls is how many ChangeMessageVisibilityBatch calls a beat runs at once: a call
// that hangs until its deadline holds up its own 10 messages, not the others.
const heartbeatCalls = 4

// heartbeat keeps received messages invisible while they are worked on: every half visibility
// timeout it renews all tracked messages with ChangeMessageVisibilityBatch, 10 per call, the
// messages whose visibility ends first in the first calls, up to heartbeatCalls calls at once,
// each under a deadline of a quarter of the visibility timeout at most (callTimeout), so that
// calls that hang cannot push the other messages past their visibility. The keep-alive
// discipline (Filebeat's): untrack removes a message and, when a renewal call that includes it
// is in flight, waits for that call to return, so no renewal can land after a delete, a retry
// delay or a release has been asked for. A receipt handle SQS no longer accepts is dropped
// quietly.
type heartbeat struct {
	s  *Source
	mu sync.Mutex
	m  map[*queue.Message]*beat
}

// beat is what the heartbeat knows of one tracked message.
type beat struct {
	// expires is when SQS makes the message visible again at the latest: the time the receive
	// or the last successful renewal was sent, plus the visibility timeout.
	expires time.Time
	// call is closed when the renewal call in flight that includes the message returns; nil
	// when none is.
	call chan struct{}
}

func newHeartbeat(s *Source) *heartbeat {
	return &heartbeat{s: s, m: map[*queue.Message]*beat{}}
}

// track starts renewing m, received by a call sent at sent.
func (h *heartbeat) track(m *queue.Message, sent time.Time) {
	h.mu.Lock()
	h.m[m] = &beat{expires: sent.Add(h.s.cfg.VisibilityTimeout)}
	h.mu.Unlock()
}

// untrack stops renewing m. It returns once no renewal of m is in flight or can start.
func (h *heartbeat) untrack(m *queue.Message) {
	h.mu.Lock()
	var call chan struct{}
	if b := h.m[m]; b != nil {
		call = b.call
	}
	delete(h.m, m)
	h.mu.Unlock()
	if call != nil {
		if testHookUntrackWaits != nil {
			testHookUntrackWaits()
		}
		<-call
	}
}

// testHookUntrackWaits, when set by a test, is called when untrack waits for a renewal in flight.
var testHookUntrackWaits func()

func (h *heartbeat) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.m)
}

func (h *heartbeat) run(ctx context.Context) {
	t := time.NewTicker(h.s.cfg.VisibilityTimeout / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.extend(ctx)
		}
	}
}

// callTimeout is the deadline of one renewal call: the SQS call timeout, but at most a quarter
// of the visibility timeout, well under the half left to a message renewed at the last beat.
func (h *heartbeat) callTimeout() time.Duration {
	return min(h.s.cfg.callTimeout(), h.s.cfg.VisibilityTimeout/4)
}

// extend renews every tracked message that no call in flight renews already, earliest expiry
// first, up to heartbeatCalls calls at once; it returns once its calls have. Each call takes
// only the messages still tracked when it starts.
func (h *heartbeat) extend(ctx context.Context) {
	h.mu.Lock()
	due := make([]*queue.Message, 0, len(h.m))
	for m, b := range h.m {
		if b.call == nil {
			due = append(due, m)
		}
	}
	sort.Slice(due, func(i, j int) bool { return h.m[due[i]].expires.Before(h.m[due[j]].expires) })
	h.mu.Unlock()
	slots := make(chan struct{}, heartbeatCalls)
	var calls sync.WaitGroup
	defer calls.Wait()
	for len(due) > 0 {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		var chunk []*queue.Message
		var call chan struct{}
		chunk, call, due = h.take(due)
		if len(chunk) == 0 {
			return
		}
		calls.Add(1)
		go func() {
			defer func() { <-slots; calls.Done() }()
			h.renew(ctx, chunk, call)
		}()
	}
}

// take returns up to 10 messages from the front of due that are still tracked and not being
// renewed, marked as renewed by the returned call, and what is left of due.
func (h *heartbeat) take(due []*queue.Message) (chunk []*queue.Message, call chan struct{}, rest []*queue.Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	call = make(chan struct{})
	for len(due) > 0 && len(chunk) < 10 {
		m := due[0]
		due = due[1:]
		if b := h.m[m]; b != nil && b.call == nil {
			b.call = call
			chunk = append(chunk, m)
		}
	}
	return chunk, call, due
}

// renew makes one ChangeMessageVisibilityBatch call for chunk under the heartbeat's deadline,
// then closes call, releasing any untrack waiting for it.
func (h *heartbeat) renew(ctx context.Context, chunk []*queue.Message, call chan struct{}) {
	defer close(call)
	ctx, cancel := context.WithTimeout(ctx, h.callTimeout())
	defer cancel()
	sent := time.Now()
	h.s.visibilityBatches(ctx, chunk, h.s.cfg.VisibilityTimeout, h.report(ctx, sent))
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range chunk {
		if b := h.m[m]; b != nil && b.call == call {
			b.call = nil
		}
	}
}

func (h *heartbeat) report(ctx context.Context, sent time.Time) func(chunk []*queue.Message, failed []types.BatchResultErrorEntry, err error) {
	return func(chunk []*queue.Message, failed []types.BatchResultErrorEntry, err error) {
		if err != nil {
			if !errors.Is(ctx.Err(), context.Canceled) { // its deadline, not the source's Close
				h.s.log.Warn("visibility heartbeat failed; will try again at the next beat", "messages", len(chunk), "error", err)
			}
			return
		}
		refused := map[int]bool{}
		for _, f := range failed {
			i, _ := strconv.Atoi(aws.ToString(f.Id))
			if i < 0 || i >= len(chunk) {
				continue
			}
			refused[i] = true
			if code := aws.ToString(f.Code); code == "ReceiptHandleIsInvalid" || code == "InvalidParameterValue" || code == "MessageNotInflight" {
				h.mu.Lock()
				delete(h.m, chunk[i]) // deleted or expired elsewhere: nothing left to keep alive
				h.mu.Unlock()
				continue
			}
			h.s.log.Warn("visibility heartbeat refused", "message_id", chunk[i].ID, "code", aws.ToString(f.Code), "reason", aws.ToString(f.Message))
		}
		h.mu.Lock()
		for i, m := range chunk {
			if b := h.m[m]; b != nil && !refused[i] {
				b.expires = sent.Add(h.s.cfg.VisibilityTimeout)
			}
		}
		h.mu.Unlock()
		if n := len(chunk) - len(refused); n > 0 {
			h.s.trace("sqs: heartbeat extended %d in-flight messages by %s", n, h.s.cfg.VisibilityTimeout)
			if h.s.hooks.Extended != nil {
				h.s.hooks.Extended(n)
			}
		}
	}
}
