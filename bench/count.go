package main

import (
	"context"
	"fmt"
	"sync/atomic"

	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	psqs "github.com/palleto/palleto/sqs"
	"golang.org/x/sys/unix"
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
		r, c.emptyReceives.Load(), float64(c.received.Load())/max(1, float64(r)), d, float64(c.deleted.Load())/max(1, float64(d)), c.changes.Load(), c.changed.Load())
}

// tmpfsDir is a directory in memory to write results to, or "" when the machine has none.
func tmpfsDir() string {
	var st unix.Statfs_t
	if unix.Statfs("/dev/shm", &st) == nil && st.Type == unix.TMPFS_MAGIC && unix.Access("/dev/shm", unix.W_OK) == nil {
		return "/dev/shm"
	}
	return ""
}

// fsName says which filesystem holds dir, for the report: "ext4 (/tmp)".
func fsName(dir string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return dir
	}
	name := map[int64]string{unix.EXT4_SUPER_MAGIC: "ext4", unix.XFS_SUPER_MAGIC: "xfs", unix.BTRFS_SUPER_MAGIC: "btrfs",
		unix.TMPFS_MAGIC: "tmpfs", unix.OVERLAYFS_SUPER_MAGIC: "overlayfs", 0x2fc12fc1: "zfs", unix.NFS_SUPER_MAGIC: "nfs"}[int64(st.Type)]
	if name == "" {
		name = fmt.Sprintf("filesystem 0x%x", st.Type)
	}
	return fmt.Sprintf("%s (%s)", name, dir)
}
