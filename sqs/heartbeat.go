package sqs

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/palleto/palleto/queue"
)

// heartbeat keeps received messages invisible while they are worked on: every half visibility
// timeout it renews all tracked messages with ChangeMessageVisibilityBatch (10 per call, each
// call under its own deadline). The keep-alive discipline (Filebeat's): untrack removes a
// message and, when a renewal that includes it is in flight, waits for that call to return, so
// no renewal can land after a delete, a retry delay or a release has been asked for. A receipt
// handle SQS no longer accepts is dropped quietly.
type heartbeat struct {
	s  *Source
	mu sync.Mutex
	m  map[*queue.Message]struct{}
	// sending holds the messages of the renewal call in flight, and sent is closed when that
	// call returns; both are nil between calls.
	sending map[*queue.Message]struct{}
	sent    chan struct{}
}

func newHeartbeat(s *Source) *heartbeat {
	return &heartbeat{s: s, m: map[*queue.Message]struct{}{}}
}

func (h *heartbeat) track(m *queue.Message) {
	h.mu.Lock()
	h.m[m] = struct{}{}
	h.mu.Unlock()
}

// untrack stops renewing m. It returns once no renewal of m is in flight or can start.
func (h *heartbeat) untrack(m *queue.Message) {
	h.mu.Lock()
	delete(h.m, m)
	_, busy := h.sending[m]
	sent := h.sent
	h.mu.Unlock()
	if busy {
		if testHookUntrackWaits != nil {
			testHookUntrackWaits()
		}
		<-sent
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

// extend renews every tracked message, one call of up to 10 at a time. Each call takes only the
// messages still tracked when it starts.
func (h *heartbeat) extend(ctx context.Context) {
	h.mu.Lock()
	all := make([]*queue.Message, 0, len(h.m))
	for m := range h.m {
		all = append(all, m)
	}
	h.mu.Unlock()
	for start := 0; start < len(all) && ctx.Err() == nil; start += 10 {
		h.mu.Lock()
		chunk := make([]*queue.Message, 0, 10)
		h.sending = map[*queue.Message]struct{}{}
		for _, m := range all[start:min(start+10, len(all))] {
			if _, ok := h.m[m]; ok {
				chunk = append(chunk, m)
				h.sending[m] = struct{}{}
			}
		}
		h.sent = make(chan struct{})
		h.mu.Unlock()
		if len(chunk) > 0 {
			h.s.visibilityBatches(ctx, chunk, h.s.cfg.VisibilityTimeout, h.report(ctx))
		}
		h.mu.Lock()
		close(h.sent)
		h.sending, h.sent = nil, nil
		h.mu.Unlock()
	}
}

func (h *heartbeat) report(ctx context.Context) func(chunk []*queue.Message, failed []types.BatchResultErrorEntry, err error) {
	return func(chunk []*queue.Message, failed []types.BatchResultErrorEntry, err error) {
		if err != nil {
			if ctx.Err() == nil {
				h.s.log.Warn("visibility heartbeat failed; will try again at the next beat", "messages", len(chunk), "error", err)
			}
			return
		}
		for _, f := range failed {
			i, _ := strconv.Atoi(aws.ToString(f.Id))
			if i < 0 || i >= len(chunk) {
				continue
			}
			if code := aws.ToString(f.Code); code == "ReceiptHandleIsInvalid" || code == "InvalidParameterValue" || code == "MessageNotInflight" {
				h.mu.Lock()
				delete(h.m, chunk[i]) // deleted or expired elsewhere: nothing left to keep alive
				h.mu.Unlock()
				continue
			}
			h.s.log.Warn("visibility heartbeat refused", "message_id", chunk[i].ID, "code", aws.ToString(f.Code), "reason", aws.ToString(f.Message))
		}
		if n := len(chunk) - len(failed); n > 0 {
			h.s.trace("sqs: heartbeat extended %d in-flight messages by %s", n, h.s.cfg.VisibilityTimeout)
			if h.s.hooks.Extended != nil {
				h.s.hooks.Extended(n)
			}
		}
	}
}
