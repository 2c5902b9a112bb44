package main

import (
	"context"
	"fmt"
	"sync/atomic"

	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	psqs "github.com/palleto/palleto/sqs"
)

// countingSQS counts the SQS requests a run makes and the messages they carry, so the report can
// say how many requests each object cost: the emulator's CPU is shared with everything else.
type countingSQS struct {
	psqs.API
	receives, received, emptyReceives atomic.Int64
	deletes, deleted                  atomic.Int64
	changes, changed                  atomic.Int64
}

func (c *countingSQS) ReceiveMessage(ctx context.Context, in *awssqs.ReceiveMessageInput, opts ...func(*awssqs.Options)) (*awssqs.ReceiveMessageOutput, error) {
	out, err := c.API.ReceiveMessage(ctx, in, opts...)
	c.receives.Add(1)
	if err == nil {
		c.received.Add(int64(len(out.Messages)))
		if len(out.Messages) == 0 {
			c.emptyReceives.Add(1)
		}
	}
	return out, err
}

func (c *countingSQS) DeleteMessageBatch(ctx context.Context, in *awssqs.DeleteMessageBatchInput, opts ...func(*awssqs.Options)) (*awssqs.DeleteMessageBatchOutput, error) {
	c.deletes.Add(1)
	c.deleted.Add(int64(len(in.Entries)))
	return c.API.DeleteMessageBatch(ctx, in, opts...)
}

func (c *countingSQS) ChangeMessageVisibilityBatch(ctx context.Context, in *awssqs.ChangeMessageVisibilityBatchInput, opts ...func(*awssqs.Options)) (*awssqs.ChangeMessageVisibilityBatchOutput, error) {
	c.changes.Add(1)
	c.changed.Add(int64(len(in.Entries)))
	return c.API.ChangeMessageVisibilityBatch(ctx, in, opts...)
}

func (c *countingSQS) perReceive() float64 {
	return float64(c.received.Load()) / max(1, float64(c.receives.Load()))
}

func (c *countingSQS) String() string {
	r, d := c.receives.Load(), c.deletes.Load()
	return fmt.Sprintf("%d receives (%d empty, %.1f messages each), %d delete batches (%.1f each), %d visibility batches (%d messages)",
		r, c.emptyReceives.Load(), c.perReceive(), d, float64(c.deleted.Load())/max(1, float64(d)), c.changes.Load(), c.changed.Load())
}
