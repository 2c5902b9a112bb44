package palleto

import (
	"context"

	"github.com/palleto/palleto/engine"
	"github.com/palleto/palleto/fetch"
	"github.com/palleto/palleto/notify"
)

// The next object's first byte, early. A worker that nears the end of a big object takes its
// next message (engine.TakeNext) and sends that message's first GET (prepare) while it still
// decodes the last megabytes: the GET's first byte (about 10 ms from MinIO here, 20-50 ms on
// AWS) and the first range's bytes then come while the worker is busy, not between two objects.
// The message taken early is kept invisible by the heartbeat as every received message is,
// handled by the same worker right after, and handed back if the daemon stops first.

// earlyFrom is how close to its end (in bytes fetched) a big object is when its worker takes
// its next message: at the decoder's pace that is about 0.1 s, enough for a GET's first byte.
// An object is big, worth it, from twice that: a small object's worker never takes a message
// early, so many small objects are shared among the workers as before.
const earlyFrom = 8 << 20

// earlyObject is the first object of a message taken early, opened before the message's turn.
type earlyObject struct {
	rec    notify.Record
	cancel context.CancelFunc
	done   chan struct{} // closed once Open returned
	obj    *fetch.Object
	err    error
	used   bool
}

// prepare opens the first object of j's message that handle will fetch (engine Prepare: it
// must not block, so the GET goes out on a goroutine of its own).
func (d *Daemon) prepare(ctx context.Context, worker int, j *job) {
	n, err := notify.Parse(j.m.Body)
	if err != nil || n.Format == notify.FormatTest {
		return
	}
	for _, rec := range n.Records {
		if skip, err := d.screen(rec); skip != "" || err != nil || d.health.IsOpen(s3Key(rec.Bucket)) {
			continue // handle will not fetch it (or not now: its bucket is down)
		}
		ctx, cancel := context.WithCancel(ctx)
		e := &earlyObject{rec: rec, cancel: cancel, done: make(chan struct{})}
		j.early = e
		d.tracef("pipeline %d: took message %s early; opening s3://%s/%s before its turn", worker, j.m.ID, rec.Bucket, rec.Key)
		go func() {
			defer close(e.done)
			e.obj, e.err = d.fetch.Open(ctx, request(rec))
		}()
		return
	}
}

func request(rec notify.Record) fetch.Request {
	return fetch.Request{Bucket: rec.Bucket, Key: rec.Key, VersionID: rec.VersionID, ETag: rec.ETag, Size: rec.Size}
}

// open opens rec's object: the one opened early for it, if any and it opened, else now. A GET
// opened early that failed is sent again, so that what fails is this attempt's own answer.
func (d *Daemon) open(ctx context.Context, j *job, rec notify.Record) (*fetch.Object, error) {
	if e := j.early; e != nil && !e.used && sameRecord(e.rec, rec) {
		e.used = true
		<-e.done
		if e.err == nil {
			return e.obj, nil
		}
		e.cancel()
	}
	return d.fetch.Open(ctx, request(rec))
}

func sameRecord(a, b notify.Record) bool {
	return a.Bucket == b.Bucket && a.Key == b.Key && a.VersionID == b.VersionID && a.ETag == b.ETag && a.Size == b.Size && a.Sequencer == b.Sequencer
}

// discardEarly ends the GET opened early, once handle is done with the message (or the message
// is handed back): a body handle did not use (the object was done already) is closed without
// waiting for its GET.
func (j *job) discardEarly() {
	e := j.early
	if e == nil {
		return
	}
	j.early = nil
	e.cancel()
	if e.used {
		return // handle read and closed it
	}
	go func() {
		<-e.done
		if e.obj != nil {
			e.obj.Body.Close()
		}
	}()
}

// takeNextNear returns what a big object's fetched-bytes counter calls on each read: once the
// object is within earlyFrom of its end, it takes the worker's next message early, until one is
// taken. Nil (nothing to do) for an object too small to be worth it, or one its message is not
// done with after.
func takeNextNear(ctx context.Context, size int64, last bool) func(read int64) bool {
	if !last || size < 2*earlyFrom {
		return nil
	}
	return func(read int64) bool { return size-read <= earlyFrom && engine.TakeNext(ctx) }
}
