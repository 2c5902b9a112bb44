package palleto

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/palleto/palleto/queue"
	"github.com/palleto/palleto/store"
)

// settle is called once per handled message, after handle, with handle's error (a panic's too).
// The message is decided once its results are committed as well: at once with a synchronous
// store, when the last commit is in with a grouped one.
func (d *Daemon) settle(j *job, err error) {
	var me *MessageError
	if err != nil && !errors.As(err, &me) { // a panic, or another error from outside handle
		j.failures = append(j.failures, objectFailure{Err: err})
	}
	d.done(j)
}

// committed is the store's word on one result of j.
func (d *Daemon) committed(j *job, rec objectRef, err error) {
	if err == nil {
		d.health.Success(storeKey)
	}
	j.mu.Lock()
	if err != nil && j.putErr == nil {
		j.putErr, j.putRec = err, rec
	}
	j.mu.Unlock()
	d.done(j)
}

// done counts down j's outstanding parts and, after the last, hands it to the ackers (ack.go):
// the store's callback and the worker never wait for SQS.
func (d *Daemon) done(j *job) {
	j.mu.Lock()
	j.pending--
	last := j.pending == 0
	j.mu.Unlock()
	if last {
		d.ack.enqueue(j)
	}
}

// decide acts on what happened to a message's objects, in this order:
//   - every object done: delete;
//   - a shutdown cut its work: hand it back (visibility 0);
//   - a failure of the world (S3 or the store unavailable): the message waits a short delay and
//     comes back; nothing of it counts toward the poison guard, nothing is deleted;
//   - a failure of an object's own that a retry may fix: recorded with its attempt count; the
//     message is retried with a backoff, unless the count reached --max-receives (the poison
//     guard), which makes it permanent;
//   - only permanent failures: dead-lettered (with --dlq-url), recorded, deleted.
//
// A message is deleted only after every record of what happened to it is durable, and each
// record and log line says what was really done with it.
func (d *Daemon) decide(j *job) {
	m := j.m
	d.stats.messages.Add(1)
	d.stats.lastWork.Store(time.Now().UnixNano())
	fails := j.failures
	if j.putErr != nil {
		fails = append(fails, objectFailure{Record: j.putRec, Err: fmt.Errorf("result of s3://%s/%s: %w", j.putRec.Bucket, j.putRec.Key, j.putErr)})
	}
	if len(fails) == 0 {
		if d.tracing() {
			d.tracef("sqs: message %s done; deleting", m.ID)
		}
		d.noteUnrecorded(m.ID, false)
		d.delete(m)
		return
	}
	var world []objectFailure
	var own []ownFailure
	for _, f := range fails {
		switch class, dep := classify(f.Err); class {
		case classShutdown:
			d.log.Info("message interrupted by shutdown; handing it back", "message_id", m.ID)
			j.discardEarly()
			d.handBack([]*queue.Message{m})
			return
		case ClassUnavailable:
			f.dep = dep
			world = append(world, f)
		default:
			own = append(own, ownFailure{objectFailure: f, class: class})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d.countAttempts(ctx, m, own)
	retry := len(world) > 0
	for _, f := range own {
		retry = retry || f.class == ClassRetryable
	}
	switch {
	case len(world) > 0:
		delay := min(d.cfg.RetryBackoff, time.Minute)
		d.record(ctx, m, own, "kept: the message waits for "+world[0].dep)
		d.defer1(ctx, m, delay, world)
	case retry:
		delay := d.backoff(maxAttempts(own))
		if d.record(ctx, m, own, "retry in "+delay.String()) {
			d.retry(ctx, m, delay)
		} else {
			d.retry(ctx, m, min(d.cfg.RetryBackoff, time.Minute))
		}
	default:
		d.fail(ctx, m, own)
	}
}

// ownFailure is a failure of an object's own (or its message's), with its class and how many
// times it has failed so.
type ownFailure struct {
	objectFailure
	class    string
	attempts int
	promoted bool // the poison guard made it permanent
}

// countAttempts sets each failure's attempt count: one more than its record says, for the same
// object version. A failure skipped because it failed for good before keeps its count. Once the
// count reaches --max-receives, a retryable failure becomes permanent.
func (d *Daemon) countAttempts(ctx context.Context, m *queue.Message, own []ownFailure) {
	for i := range own {
		f := &own[i]
		if f.Record.Bucket == "" && f.before == nil && m.ReceiveCount != 1 { // 0: a transport that counts no deliveries
			f.before, _ = d.store.Failure(ctx, "", "", m.ID) // unreadable: counted from 1, which errs on the side of retrying
		}
		if f.again {
			f.attempts = max(f.before.Attempts, 1)
			continue
		}
		f.attempts = 1
		if f.before != nil && (f.Record.Bucket == "" || sameFailedVersion(f.before, f.Record)) {
			f.attempts = f.before.Attempts + 1
		}
		if f.class == ClassRetryable && d.cfg.MaxReceives > 0 && f.attempts >= d.cfg.MaxReceives {
			f.class, f.promoted = ClassPermanent, true
		}
	}
}

func maxAttempts(own []ownFailure) int {
	n := 1
	for _, f := range own {
		n = max(n, f.attempts)
	}
	return n
}

// record writes a failure record for each of own, saying what happens to the message (action,
// unless the failure's own class decides it: a permanent failure in a message that is kept says
// so). It returns false, and logs loudly, when a record could not be written.
func (d *Daemon) record(ctx context.Context, m *queue.Message, own []ownFailure, action string) bool {
	ok := true
	defer func() { d.noteUnrecorded(m.ID, !ok) }()
	for _, f := range own {
		msg := f.Err.Error()
		if f.promoted {
			msg = fmt.Sprintf("failed %d times (max-receives %d); last error: %s", f.attempts, d.cfg.MaxReceives, msg)
		}
		act := action
		if f.class == ClassPermanent && strings.HasPrefix(action, "retry") {
			act = "kept: the message is retried for another of its objects"
		}
		rec := store.Failure{Bucket: f.Record.Bucket, Key: f.Record.Key, VersionID: f.Record.VersionID, ETag: strings.Trim(f.Record.ETag, `"`),
			Sequencer: f.Record.Sequencer, MessageID: m.ID, Class: f.class, Error: msg, ReceiveCount: m.ReceiveCount,
			Attempts: f.attempts, Action: act, At: time.Now().UTC()}
		if f.again {
			rec = *f.before
			rec.Action, rec.At = act, time.Now().UTC()
		}
		if f.Record.Bucket == "" {
			rec.Body = truncate(string(m.Body), 4096)
		}
		where, err := d.store.PutFailure(ctx, rec)
		if err != nil {
			ok = false
			d.health.Failure(storeKey, err, d.store.Ready)
			d.log.Error("CANNOT RECORD FAILURE (results store unavailable: disk full or not writable?); the message is kept and retried",
				"message_id", m.ID, "bucket", rec.Bucket, "key", rec.Key, "error", err)
			continue
		}
		if f.again {
			d.log.Info("object skipped: it failed for good before", "bucket", rec.Bucket, "key", rec.Key, "error", rec.Error, "action", act, "record", where, "message_id", m.ID)
			continue
		}
		d.stats.failed.Add(1)
		d.met.Failure(rec.Bucket, rec.Key, f.class, msg, act)
		d.log.Warn("object failed", "bucket", rec.Bucket, "key", rec.Key, "class", f.class, "error", msg,
			"attempts", f.attempts, "receive_count", m.ReceiveCount, "action", act, "record", where, "message_id", m.ID)
	}
	return ok
}

// fail ends a message whose every failure is permanent: dead letter (with --dlq-url), records,
// delete. If the dead letter or a record cannot be written, the message is kept and comes back.
func (d *Daemon) fail(ctx context.Context, m *queue.Message, own []ownFailure) {
	action := "deleted"
	f := own[0]
	for _, o := range own { // the dead letter names a failure of this delivery before one skipped as known
		if !o.again {
			f = o
			break
		}
	}
	class := f.class
	if f.promoted {
		class += " (max-receives)"
	}
	err := d.src.DeadLetter(ctx, m, queue.DeadLetter{Error: f.Err.Error(), Class: class, ReceiveCount: m.ReceiveCount, Attempts: f.attempts})
	switch {
	case err == nil:
		action = "dead-lettered"
		d.met.DeadLettered()
		d.out.deadLettered.Add(1)
		d.met.SourceDeadLettered(d.source())
	case !errors.Is(err, queue.ErrNoDeadLetterQueue):
		d.log.Error("dead-letter send failed; the message is kept and comes back", "message_id", m.ID, "error", err)
		d.retry(ctx, m, min(d.cfg.RetryBackoff, time.Minute))
		return
	}
	if !d.record(ctx, m, own, action) {
		d.retry(ctx, m, min(d.cfg.RetryBackoff, time.Minute))
		return
	}
	d.tracef("sqs: message %s failed permanently (%s); deleting", m.ID, action)
	d.delete(m)
}

// delete deletes m, counting it: the daemon's decision, whatever the source (the SQS source's
// hook counts what SQS confirmed, in palleto_sqs_messages_deleted_total).
func (d *Daemon) delete(m *queue.Message) {
	d.stats.deleted.Add(1)
	d.met.SourceDeleted(d.source(), 1)
	d.undone.set(m.ID, false)
	d.src.Delete(m)
}

// defer1 puts a message back after a failure of the world: the dependency is told to the
// breaker, the log says so (at warning level while the breaker is closed, since a lone
// failure is news; at debug level once it is open, since the breaker said it), and nothing of
// it counts toward the poison guard.
func (d *Daemon) defer1(ctx context.Context, m *queue.Message, delay time.Duration, world []objectFailure) {
	for _, f := range world {
		d.stats.deferred.Add(1)
		var open bool
		switch f.dep {
		case depS3:
			open = d.s3Failure(f.Record.Bucket, f.Err)
		default:
			open = d.health.Failure(storeKey, f.Err, d.store.Ready)
		}
		level := d.log.Warn
		if open {
			level = d.log.Debug
		}
		d.met.Failure(f.Record.Bucket, f.Record.Key, ClassUnavailable, f.Err.Error(), "kept: "+f.dep+" unavailable, back in "+delay.String())
		level("object deferred: "+f.dep+" unavailable; the message comes back, nothing counted against it",
			"bucket", f.Record.Bucket, "key", f.Record.Key, "error", f.Err, "retry_in", delay.String(), "message_id", m.ID)
	}
	d.retry(ctx, m, delay)
}

// retry makes m visible again after delay, and tells the pipeline to wait for it before an
// idle exit.
func (d *Daemon) retry(ctx context.Context, m *queue.Message, delay time.Duration) {
	d.tracef("sqs: message %s failed; visible again in %s", m.ID, delay)
	d.met.Returned("retry", 1)
	d.out.retried.Add(1)
	d.met.SourceRetried(d.source())
	d.undone.set(m.ID, true)
	back := time.Now().Add(delay)
	if err := d.src.Retry(ctx, m, delay); err != nil {
		d.log.Warn("could not set the retry delay; the message returns after its visibility timeout", "message_id", m.ID, "error", err)
		back = time.Now().Add(d.cfg.SQS.VisibilityTimeout)
	}
	d.pl.Deferred(back)
}

// backoff is RetryBackoff doubled for each failure after the first, capped at 15 minutes.
func (d *Daemon) backoff(attempts int) time.Duration {
	b := d.cfg.RetryBackoff
	for i := 1; i < attempts && b < 15*time.Minute; i++ {
		b *= 2
	}
	return min(b, 15*time.Minute)
}

// release hands messages never started back at once (the engine's Release).
func (d *Daemon) release(jobs []*job) {
	msgs := make([]*queue.Message, len(jobs))
	for i, j := range jobs {
		msgs[i] = j.m
		j.discardEarly()
	}
	defer d.unsettled.Add(-int64(len(jobs)))
	d.handBack(msgs)
}

// handBack makes msgs visible again at once (never started, or cut by the shutdown).
func (d *Daemon) handBack(msgs []*queue.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d.met.Returned("shutdown", len(msgs))
	d.out.released.Add(int64(len(msgs)))
	d.met.SourceReleased(d.source(), len(msgs))
	if err := d.src.Release(ctx, msgs); err != nil {
		d.log.Warn("could not hand unstarted messages back; they return after their visibility timeout", "messages", len(msgs), "error", err)
		return
	}
	d.log.Info("messages handed back, visible at once", "messages", len(msgs))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "...(truncated)"
}
