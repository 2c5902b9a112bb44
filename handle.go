package palleto

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/palleto/palleto/decode"
	"github.com/palleto/palleto/fetch"
	"github.com/palleto/palleto/metrics"
	"github.com/palleto/palleto/notify"
	"github.com/palleto/palleto/process"
	"github.com/palleto/palleto/queue"
	"github.com/palleto/palleto/store"
)

// job is one message on its way through the pipeline: what handle found out about each of its
// objects, for settle to act on.
type job struct {
	m        *queue.Message
	failures []objectFailure

	mu      sync.Mutex
	pending int   // results handed to the store and not yet committed, plus 1 until settle
	putErr  error // the first commit that failed
	putRec  objectRef

	early *earlyObject // its first object, opened before its turn (early.go)
	last  bool         // the object being handled is the message's last
}

// objectRef is the event record of an object.
type objectRef = notify.Record

// objectFailure is one failed object of a message; Record is zero when the message itself could
// not be understood.
type objectFailure struct {
	Record notify.Record
	Err    error
	// before is the object's failure record as it was before this attempt (nil: none), and
	// again says the object was skipped because that record says it failed for good.
	before *store.Failure
	again  bool
	dep    string // for a failure of the world: what was unavailable
}

// MessageError is what handle returns when any part of a message failed.
type MessageError struct{ Failures []objectFailure }

func (e *MessageError) Error() string {
	parts := make([]string, len(e.Failures))
	for i, f := range e.Failures {
		parts[i] = f.Err.Error()
	}
	return strings.Join(parts, "; ")
}

// Classes of failure, as recorded and logged.
const (
	// ClassPermanent: the object's (or message's) own fault, which retrying cannot fix: it is
	// recorded, dead-lettered when a DLQ is set, and the message deleted.
	ClassPermanent = "permanent"
	// ClassRetryable: the object's own fault that a retry may get past (a processor error, a
	// panic): retried with backoff, and counted by the poison guard.
	ClassRetryable = "retryable"
	// ClassUnavailable: a failure of the world (S3, SQS or the store down, slow, full or
	// refusing the credentials): never counted, never deleted; the message waits.
	ClassUnavailable = "unavailable"
	classShutdown    = "shutdown"
)

// Dependencies a failure of the world is blamed on, as the breaker and the log name them.
const (
	depS3    = "S3"
	depStore = "results store"
)

// classify decides a failure's class, and for a failure of the world which dependency failed:
// the one table of whose fault a failure is.
func classify(err error) (class, dep string) {
	switch {
	case errors.Is(err, context.Canceled):
		return classShutdown, ""
	case errors.Is(err, notify.ErrMalformed),
		errors.Is(err, decode.ErrCorrupt),
		errors.Is(err, decode.ErrTooMuchMemory),
		errors.Is(err, fetch.ErrPermanent),
		errors.Is(err, process.ErrPermanent),
		errors.Is(err, ErrTooLarge),
		errors.Is(err, ErrRefused),
		errors.Is(err, ErrFailedBefore),
		errors.Is(err, store.ErrBadData): // a result the store cannot hold for its content
		return ClassPermanent, ""
	case errors.Is(err, ErrObjectDenied): // a 403 on one object while its bucket answers
		return ClassRetryable, ""
	case errors.Is(err, fetch.ErrUnavailable):
		return ClassUnavailable, depS3
	case errors.Is(err, store.ErrUnavailable):
		return ClassUnavailable, depStore
	}
	return ClassRetryable, ""
}

// handle processes every ObjectCreated record of one message. It runs on engine worker `worker`;
// ctx is cancelled only at the hard stop of a shutdown.
func (d *Daemon) handle(ctx context.Context, worker int, j *job) error {
	m := j.m
	j.pending = 1 // settle's own share: the message is decided once settle ran and every result is in
	defer j.discardEarly()
	if d.tracing() {
		d.tracef("pipeline %d: got message %s (receive count %d)", worker, m.ID, m.ReceiveCount)
	}
	d.met.MessageStarted()
	defer d.met.MessageDone()
	d.met.MessageWaited(m.SentAt, m.ReceivedAt)
	defer d.met.Idle(worker) // the status page's in-flight list
	n, err := notify.Parse(m.Body)
	if err != nil {
		j.failures = []objectFailure{{Err: err}}
		return &MessageError{Failures: j.failures}
	}
	if n.Format == notify.FormatTest {
		d.stats.skipped.Add(1)
		d.testLog.Do(func() {
			d.log.Info("s3:TestEvent received: the bucket notification is wired to this queue; deleting it", "message_id", m.ID)
		})
		return nil
	}
	for _, r := range n.Skipped {
		d.stats.skipped.Add(1)
		d.log.Debug("event skipped: not ObjectCreated", "event", r.EventName, "bucket", r.Bucket, "key", r.Key, "message_id", m.ID)
	}
	for i, rec := range n.Records {
		j.last = i == len(n.Records)-1
		st := objectStats{metric: d.met.ObjectStarted(rec.EventTime)}
		d.met.Working(worker, rec.Bucket, rec.Key, rec.Size)
		f := d.object(ctx, worker, j, rec, &st)
		if !st.atCommit { // else the store's report decides the outcome (stored.go)
			st.metric(st.outcome(f), st.fetched, st.decoded)
		}
		if f != nil {
			j.failures = append(j.failures, *f)
			if ctx.Err() != nil {
				break
			}
		}
	}
	if len(j.failures) > 0 {
		return &MessageError{Failures: j.failures}
	}
	return nil
}

// objectStats is what object tells handle for the metrics.
type objectStats struct {
	skipped          string // metrics.OutcomeFiltered or OutcomeAlreadyDone when not processed
	fetched, decoded int64
	metric           func(outcome string, fetched, decoded int64) // the object's metrics, once
	atCommit         bool                                         // its result went to the store, which calls metric
}

func (s objectStats) outcome(f *objectFailure) string {
	if f == nil {
		if s.skipped != "" {
			return s.skipped
		}
		return metrics.OutcomeOK
	}
	switch class, _ := classify(f.Err); class {
	case ClassPermanent:
		return metrics.OutcomePermanent
	case ClassUnavailable, classShutdown:
		return metrics.OutcomeUnavailable
	}
	return metrics.OutcomeRetryable
}

// object streams one object through decode and the processor and hands its result to the store.
func (d *Daemon) object(ctx context.Context, worker int, j *job, rec notify.Record, st *objectStats) *objectFailure {
	m := j.m
	fail := func(err error) *objectFailure { return &objectFailure{Record: rec, Err: err} }
	where := fmt.Sprintf("s3://%s/%s", rec.Bucket, rec.Key)
	skip, err := d.screen(rec)
	if err != nil {
		return fail(err)
	}
	switch skip {
	case skipOwnOutput:
		st.skipped = metrics.OutcomeFiltered
		d.stats.skipped.Add(1)
		d.met.Skipped(skipOwnOutput)
		d.tracef("pipeline %d: %s skipped: written by this daemon's results store", worker, where)
		d.log.Info("object skipped: Palleto's own output (written by its results store), never processed", "bucket", rec.Bucket, "key", rec.Key, "outcome", "own_output", "message_id", m.ID)
		return nil
	case skipFiltered:
		st.skipped = metrics.OutcomeFiltered
		d.stats.skipped.Add(1)
		d.met.Skipped(skipFiltered)
		d.tracef("pipeline %d: %s skipped by --include/--exclude", worker, where)
		d.log.Info("object skipped by filters", "bucket", rec.Bucket, "key", rec.Key, "outcome", "filtered", "message_id", m.ID)
		return nil
	}
	var old *store.Result
	// On a first delivery (receive count 1) with a store that decides at commit, no lookup: a
	// result is rarely there yet, and the commit reports one (stored.go). A redelivery (or a
	// transport that counts none: 0) looks first, since work was likely done already.
	if dc, ok := d.store.(store.CommitDecider); m.ReceiveCount != 1 || !ok || !dc.DecidesAtCommit() {
		if old, err = d.store.Result(ctx, rec.Bucket, rec.Key, d.proc.Name()); err != nil {
			return fail(fmt.Errorf("result of %s: %w", where, err))
		}
	}
	if store.SameVersion(old, rec.VersionID, rec.ETag) || (old != nil && store.Later(old.Sequencer, rec.Sequencer)) {
		why := "already has a result for this version"
		if !store.SameVersion(old, rec.VersionID, rec.ETag) {
			why = "has a result of a later event (sequencer " + old.Sequencer + " after " + rec.Sequencer + ")"
		}
		st.skipped = metrics.OutcomeAlreadyDone
		d.stats.already.Add(1)
		d.tracef("pipeline %d: %s %s; skipped", worker, where, why)
		d.log.Info("object already done", "bucket", rec.Bucket, "key", rec.Key, "etag", rec.ETag, "outcome", "already_done", "why", why, "message_id", m.ID)
		return nil
	}
	var before *store.Failure
	if m.ReceiveCount != 1 { // a first delivery has no failure behind it; later ones (and those of a transport that counts none: 0) may
		if before, err = d.store.Failure(ctx, rec.Bucket, rec.Key, ""); err != nil {
			return fail(fmt.Errorf("failure record of %s: %w", where, err))
		}
		if before != nil && before.Class == ClassPermanent && sameFailedVersion(before, rec) {
			return &objectFailure{Record: rec, Err: fmt.Errorf("%w: %s failed for good before: %s", ErrFailedBefore, where, before.Error), before: before, again: true}
		}
	}
	if !d.health.Allow(s3Key(rec.Bucket)) { // its bucket is down: put back without a GET
		return fail(fmt.Errorf("%w: %s not fetched: S3 of bucket %s is unavailable (the breaker is open; probing it)", fetch.ErrUnavailable, where, rec.Bucket))
	}
	f := d.fetchAndProcess(ctx, worker, j, rec, st)
	if f != nil {
		f.before = before
	}
	return f
}

// Why screen skips an object (the reasons of palleto_objects_skipped_total).
const (
	skipOwnOutput = "own_output" // written by the daemon's own results store (own.go)
	skipFiltered  = "filtered"   // left out by --include/--exclude
)

// screen is what the event alone says of rec, before the results store or S3 is asked: skip
// (skipOwnOutput, skipFiltered) for an object not to act on, or an error for an event Palleto
// refuses or an object over the size limit (not worth a GET). Its own output is checked first:
// a refusal is recorded, and a record is a write, whose event must not be refused in turn.
func (d *Daemon) screen(rec notify.Record) (skip string, err error) {
	where := fmt.Sprintf("s3://%s/%s", rec.Bucket, rec.Key)
	if d.ownOutput(rec.Bucket, rec.Key) {
		return skipOwnOutput, nil
	}
	if len(d.cfg.Buckets) > 0 && !slices.Contains(d.cfg.Buckets, rec.Bucket) {
		return "", fmt.Errorf("%w: %s: bucket %q is not in the --bucket allowlist %v", ErrRefused, where, rec.Bucket, d.cfg.Buckets)
	}
	if !utf8.ValidString(rec.Key) {
		return "", fmt.Errorf("%w: s3://%s/%q: the key is not valid UTF-8, which no S3 object key can be", ErrRefused, rec.Bucket, rec.Key)
	}
	if !d.wanted(rec.Key) {
		return skipFiltered, nil
	}
	return "", d.checkObjectSize(where, rec.Size)
}

// ErrFailedBefore is wrapped by the error of an object skipped because it failed permanently
// on an earlier delivery of its message (a sibling's failure had kept the message).
var ErrFailedBefore = errors.New("failed permanently before")

func sameFailedVersion(f *store.Failure, rec notify.Record) bool {
	if rec.VersionID != "" && f.VersionID != "" {
		return rec.VersionID == f.VersionID
	}
	return strings.Trim(rec.ETag, `"`) == strings.Trim(f.ETag, `"`)
}

func (d *Daemon) fetchAndProcess(ctx context.Context, worker int, j *job, rec notify.Record, st *objectStats) *objectFailure {
	m := j.m
	fail := func(err error) *objectFailure { return &objectFailure{Record: rec, Err: err} }
	where := "s3://" + rec.Bucket + "/" + rec.Key
	started := time.Now()
	obj, err := d.open(ctx, j, rec)
	if err != nil {
		return fail(d.deniedAlone(ctx, rec.Bucket, where, err))
	}
	defer obj.Body.Close()
	if d.tracing() {
		d.tracef("pipeline %d: downloading %s (%d bytes)", worker, where, obj.Size)
	}
	if err := d.checkObjectSize(where, obj.Size); err != nil { // the size may have changed since the event
		return fail(err)
	}
	fetched := &countingReader{r: obj.Body, limit: d.cfg.MaxObjectBytes, what: "--max-object-bytes", near: takeNextNear(ctx, obj.Size, j.last),
		live: d.met.Reading(worker, obj.Size)}
	defer func() { st.fetched = fetched.n }()
	dr, err := decode.Open(fetched, decode.Options{MaxWindow: d.cfg.ZstdMaxWindow})
	if err != nil {
		return fail(fmt.Errorf("decode %s: %w", where, err))
	}
	defer dr.Close()
	decoded := &countingReader{r: dr, limit: d.cfg.MaxDecompressedBytes, what: "--max-decompressed-bytes"}
	defer func() { st.decoded = decoded.n }()
	fields, err := d.proc.Process(ctx, process.Object{Bucket: rec.Bucket, Key: rec.Key, VersionID: rec.VersionID, ETag: rec.ETag, Encoding: dr.Encoding}, decoded)
	if err != nil {
		return fail(fmt.Errorf("process %s (%s, %s): %w", where, dr.Encoding, d.proc.Name(), err))
	}
	d.health.Success(s3Key(rec.Bucket))
	d.noteGood(rec.Bucket, rec.Key)
	etag := obj.ETag
	if etag == "" {
		etag = strings.Trim(rec.ETag, "\"")
	}
	version := obj.VersionID
	if version == "" {
		version = rec.VersionID
	}
	res := store.Result{
		Bucket: rec.Bucket, Key: rec.Key, VersionID: version, ETag: etag, Sequencer: rec.Sequencer,
		Size: fetched.n, Bytes: decoded.n, Encoding: dr.Encoding, Processor: d.proc.Name(),
		MessageID: m.ID, ReceiveCount: m.ReceiveCount, EventTime: rec.EventTime,
		StartedAt: started.UTC(), FinishedAt: time.Now().UTC(), Fields: fields,
	}
	j.mu.Lock()
	j.pending++
	j.mu.Unlock()
	st.atCommit = true
	put := &stored{d: d, j: j, rec: rec, res: res, metric: st.metric, took: time.Since(started)}
	result := d.store.Put(ctx, res, put.done)
	put.returned(result)
	if d.tracing() {
		d.tracef("pipeline %d: processed %s: %d bytes %s -> %d bytes, %v; result %s", worker, where, fetched.n, dr.Encoding, decoded.n, fieldsSummary(fields), result)
	}
	return nil
}

func fieldsSummary(f process.Fields) string {
	if l, ok := f["lines"]; ok {
		return fmt.Sprintf("%v lines", l)
	}
	return fmt.Sprintf("%v", map[string]any(f))
}

// ErrTooLarge is wrapped by the error of an object over a size limit: a permanent failure.
var ErrTooLarge = errors.New("object over the size limit")

// ErrRefused is wrapped by the error of an event Palleto refuses to act on (a bucket outside the
// allowlist): a permanent failure.
var ErrRefused = errors.New("refused")

// checkObjectSize fails with ErrTooLarge when size is over --max-object-bytes. Bodies of unknown
// or understated size are still stopped by the counting reader.
func (d *Daemon) checkObjectSize(where string, size int64) error {
	if max := d.cfg.MaxObjectBytes; max > 0 && size > max {
		return fmt.Errorf("%w: %s is %d bytes, over --max-object-bytes %d", ErrTooLarge, where, size, max)
	}
	return nil
}

// wanted applies --include and --exclude to a key.
func (d *Daemon) wanted(key string) bool {
	if len(d.cfg.Include) > 0 && !slices.ContainsFunc(d.cfg.Include, func(g string) bool { ok, _ := path.Match(g, key); return ok }) {
		return false
	}
	return !slices.ContainsFunc(d.cfg.Exclude, func(g string) bool { ok, _ := path.Match(g, key); return ok })
}

// countingReader counts bytes and, with a limit, fails with ErrTooLarge once more than limit bytes
// have been read; it never reads more than one byte past the limit, and keeps failing after.
type countingReader struct {
	r     io.Reader
	n     int64
	limit int64
	what  string
	// near, when set, is called after each read with the count, until it returns true.
	near func(n int64) bool
	// live, when set, is given the count after each read (the status page's progress bar).
	live *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.limit > 0 && int64(len(p)) > c.limit-c.n+1 {
		p = p[:c.limit-c.n+1]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.live != nil {
		c.live.Store(c.n)
	}
	if c.near != nil && c.near(c.n) {
		c.near = nil
	}
	if c.limit > 0 && c.n > c.limit {
		return n, fmt.Errorf("%w: more than %d bytes (%s)", ErrTooLarge, c.limit, c.what)
	}
	return n, err
}
