package sqs

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// heartbeat keeps received messages invisible while they are worked on: every half visibility
// timeout it renews all tracked messages with ChangeMessageVisibilityBatch (10 per call). A
// message is untracked before it is deleted, retried or released, so the heartbeat never races a
// delete. A receipt handle SQS no longer accepts is dropped quietly.
type heartbeat struct {
	s  *Source
	mu sync.Mutex
	m  map[*Message]struct{}
}

func newHeartbeat(s *Source) *heartbeat {
	return &heartbeat{s: s, m: map[*Message]struct{}{}}
}

func (h *heartbeat) track(m *Message) {
	h.mu.Lock()
	h.m[m] = struct{}{}
	h.mu.Unlock()
}

func (h *heartbeat) untrack(m *Message) {
	h.mu.Lock()
	delete(h.m, m)
	h.mu.Unlock()
}

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

func (h *heartbeat) extend(ctx context.Context) {
	h.mu.Lock()
	msgs := make([]*Message, 0, len(h.m))
	for m := range h.m {
		msgs = append(msgs, m)
	}
	h.mu.Unlock()
	h.s.visibilityBatches(ctx, msgs, h.s.cfg.VisibilityTimeout, func(chunk []*Message, failed []types.BatchResultErrorEntry, err error) {
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
				h.untrack(chunk[i]) // deleted or expired elsewhere: nothing left to keep alive
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
	})
}
