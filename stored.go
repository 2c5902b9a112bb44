package palleto

import (
	"errors"
	"sync"
	"time"

	"github.com/palleto/palleto/metrics"
	"github.com/palleto/palleto/store"
)

// stored is a result handed to the store. Once Put has returned (where the result is) and the
// store has called done (its report), in either order, the object's outcome is known: ok when
// the result was stored, already_done when the store kept its own of the same version or of a
// later event (store.ErrAlreadyStored: found at commit, on a first delivery that did not look
// first), or the failure of the commit. Only then are the object's log line, counters and
// metrics written, and the job told (committed).
type stored struct {
	d      *Daemon
	j      *job
	rec    objectRef
	res    store.Result
	metric func(outcome string, fetched, decoded int64)
	took   time.Duration // fetch, decode and process

	mu    sync.Mutex
	parts int // of 2: Put returned, done called
	where string
	err   error
}

// returned is Put's return.
func (s *stored) returned(where string) {
	s.mu.Lock()
	s.where, s.parts = where, s.parts+1
	last := s.parts == 2
	s.mu.Unlock()
	if last {
		s.finish()
	}
}

// done is the store's report, given to Put.
func (s *stored) done(err error) {
	s.mu.Lock()
	s.err, s.parts = err, s.parts+1
	last := s.parts == 2
	s.mu.Unlock()
	if last {
		s.finish()
	}
}

func (s *stored) finish() {
	d, rec, res, err := s.d, s.rec, s.res, s.err
	switch {
	case errors.Is(err, store.ErrAlreadyStored):
		why := "already has a result for this version"
		if errors.Is(err, store.ErrSuperseded) {
			why = "has a result of a later event"
		}
		d.stats.already.Add(1)
		d.stats.bytes.Add(res.Bytes)
		d.stats.fetched.Add(res.Size)
		s.metric(metrics.OutcomeAlreadyDone, res.Size, res.Bytes)
		d.tracef("%s/%s %s (found at commit)", rec.Bucket, rec.Key, why)
		d.log.Info("object already done", "bucket", rec.Bucket, "key", rec.Key, "etag", rec.ETag, "outcome", "already_done",
			"why", why+" (found at commit)", "message_id", s.j.m.ID)
		err = nil
	case err == nil:
		d.stats.objects.Add(1)
		d.stats.bytes.Add(res.Bytes)
		d.stats.fetched.Add(res.Size)
		if l, ok := res.Fields["lines"].(int64); ok {
			d.stats.lines.Add(l)
		}
		s.metric(metrics.OutcomeOK, res.Size, res.Bytes)
		d.log.Info("object processed", "bucket", rec.Bucket, "key", rec.Key, "size", res.Size, "bytes", res.Bytes,
			"encoding", res.Encoding, "duration", s.took.Round(time.Microsecond).String(), "outcome", "ok", "result", s.where, "message_id", s.j.m.ID)
	default: // decide records it, or puts the message back
		s.metric(objectStats{}.outcome(&objectFailure{Err: err}), res.Size, res.Bytes)
	}
	d.committed(s.j, rec, err)
}
