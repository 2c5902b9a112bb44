package palleto

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/palleto/palleto/decode"
	"github.com/palleto/palleto/fetch"
	"github.com/palleto/palleto/metrics"
	"github.com/palleto/palleto/notify"
	"github.com/palleto/palleto/process"
	"github.com/palleto/palleto/sink"
	"github.com/palleto/palleto/sqs"
)

// objectFailure is one failed object of a message; Record is zero when the message itself could
// not be understood.
type objectFailure struct {
	Record notify.Record
	Err    error
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

// handle processes every ObjectCreated record of one message. It runs on engine worker `worker`;
// ctx is cancelled only at the hard stop of a shutdown.
func (d *Daemon) handle(ctx context.Context, worker int, m *sqs.Message) error {
	d.tracef("pipeline %d: got message %s (receive count %d)", worker, m.ID, m.ReceiveCount)
	d.met.MessageStarted()
	defer d.met.MessageDone()
	n, err := notify.Parse(m.Body)
	if err != nil {
		return &MessageError{Failures: []objectFailure{{Err: err}}}
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
	var fails []objectFailure
	for _, rec := range n.Records {
		var st objectStats
		done := d.met.ObjectStarted(rec.EventTime)
		err := d.object(ctx, worker, m, rec, &st)
		done(st.outcome(err), st.fetched, st.decoded)
		if err != nil {
			fails = append(fails, objectFailure{Record: rec, Err: err})
			if ctx.Err() != nil {
				break
			}
		}
	}
	if len(fails) > 0 {
		return &MessageError{Failures: fails}
	}
	return nil
}

// objectStats is what object tells handle for the metrics.
type objectStats struct {
	skipped          string // metrics.OutcomeFiltered or OutcomeAlreadyDone when not processed
	fetched, decoded int64
}

func (s objectStats) outcome(err error) string {
	switch {
	case err == nil && s.skipped != "":
		return s.skipped
	case err == nil:
		return metrics.OutcomeOK
	case classify(err) == ClassPermanent:
		return metrics.OutcomePermanent
	}
	return metrics.OutcomeRetryable
}

// object streams one object through decode and the processor and writes its result.
func (d *Daemon) object(ctx context.Context, worker int, m *sqs.Message, rec notify.Record, st *objectStats) error {
	where := fmt.Sprintf("s3://%s/%s", rec.Bucket, rec.Key)
	if len(d.cfg.Buckets) > 0 && !slices.Contains(d.cfg.Buckets, rec.Bucket) {
		return fmt.Errorf("%w: %s: bucket %q is not in the --bucket allowlist %v", ErrRefused, where, rec.Bucket, d.cfg.Buckets)
	}
	if !utf8.ValidString(rec.Key) {
		return fmt.Errorf("%w: s3://%s/%q: the key is not valid UTF-8, which no S3 object key can be", ErrRefused, rec.Bucket, rec.Key)
	}
	if !d.wanted(rec.Key) {
		st.skipped = metrics.OutcomeFiltered
		d.stats.skipped.Add(1)
		d.tracef("pipeline %d: %s skipped by --include/--exclude", worker, where)
		d.log.Info("object skipped by filters", "bucket", rec.Bucket, "key", rec.Key, "outcome", "filtered", "message_id", m.ID)
		return nil
	}
	if err := d.checkObjectSize(where, rec.Size); err != nil { // before the GET: it is not worth starting
		return err
	}
	if _, same := d.sink.Existing(rec.Bucket, rec.Key, rec.VersionID, rec.ETag); same {
		st.skipped = metrics.OutcomeAlreadyDone
		d.stats.already.Add(1)
		d.tracef("pipeline %d: %s already has a result for this version; skipped", worker, where)
		d.log.Info("object already done", "bucket", rec.Bucket, "key", rec.Key, "etag", rec.ETag, "outcome", "already_done", "message_id", m.ID)
		return nil
	}
	started := time.Now()
	obj, err := d.fetch.Open(ctx, fetch.Request{Bucket: rec.Bucket, Key: rec.Key, VersionID: rec.VersionID, ETag: rec.ETag})
	if err != nil {
		return err
	}
	defer obj.Body.Close()
	d.tracef("pipeline %d: downloading %s (%d bytes)", worker, where, obj.Size)
	if err := d.checkObjectSize(where, obj.Size); err != nil { // the size may have changed since the event
		return err
	}
	fetched := &countingReader{r: obj.Body, limit: d.cfg.MaxObjectBytes, what: "--max-object-bytes"}
	defer func() { st.fetched = fetched.n }()
	dr, err := decode.NewReader(fetched)
	if err != nil {
		return fmt.Errorf("decode %s: %w", where, err)
	}
	defer dr.Close()
	decoded := &countingReader{r: dr, limit: d.cfg.MaxDecompressedBytes, what: "--max-decompressed-bytes"}
	defer func() { st.decoded = decoded.n }()
	fields, err := d.proc.Process(ctx, process.Object{Bucket: rec.Bucket, Key: rec.Key, VersionID: rec.VersionID, ETag: rec.ETag, Encoding: dr.Encoding}, decoded)
	if err != nil {
		return fmt.Errorf("process %s (%s, %s): %w", where, dr.Encoding, d.proc.Name(), err)
	}
	etag := obj.ETag
	if etag == "" {
		etag = strings.Trim(rec.ETag, "\"")
	}
	version := obj.VersionID
	if version == "" {
		version = rec.VersionID
	}
	res := sink.Result{
		Bucket: rec.Bucket, Key: rec.Key, VersionID: version, ETag: etag,
		Size: fetched.n, Bytes: decoded.n, Encoding: dr.Encoding, Processor: d.proc.Name(),
		MessageID: m.ID, ReceiveCount: m.ReceiveCount, EventTime: rec.EventTime,
		StartedAt: started.UTC(), FinishedAt: time.Now().UTC(), Fields: fields,
	}
	path, err := d.sink.WriteResult(res)
	if err != nil {
		return fmt.Errorf("result of %s: %w", where, err)
	}
	d.stats.objects.Add(1)
	d.stats.bytes.Add(decoded.n)
	d.stats.fetched.Add(fetched.n)
	if l, ok := fields["lines"].(int64); ok {
		d.stats.lines.Add(l)
	}
	d.tracef("pipeline %d: processed %s: %d bytes %s -> %d bytes, %v; result %s", worker, where, fetched.n, dr.Encoding, decoded.n, fieldsSummary(fields), path)
	d.log.Info("object processed", "bucket", rec.Bucket, "key", rec.Key, "size", fetched.n, "bytes", decoded.n,
		"encoding", dr.Encoding, "duration", time.Since(started).Round(time.Microsecond), "outcome", "ok", "result", path, "message_id", m.ID)
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
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.limit > 0 && int64(len(p)) > c.limit-c.n+1 {
		p = p[:c.limit-c.n+1]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.limit > 0 && c.n > c.limit {
		return n, fmt.Errorf("%w: more than %d bytes (%s)", ErrTooLarge, c.limit, c.what)
	}
	return n, err
}

// Classes of failure, as recorded.
const (
	ClassPermanent = "permanent"
	ClassRetryable = "retryable"
	classShutdown  = "shutdown"
)

// classify decides a failure's class: the one table of what retrying cannot fix.
func classify(err error) string {
	switch {
	case errors.Is(err, context.Canceled):
		return classShutdown
	case errors.Is(err, notify.ErrMalformed),
		errors.Is(err, decode.ErrCorrupt),
		errors.Is(err, fetch.ErrPermanent),
		errors.Is(err, process.ErrPermanent),
		errors.Is(err, ErrTooLarge),
		errors.Is(err, ErrRefused):
		return ClassPermanent
	}
	return ClassRetryable
}
