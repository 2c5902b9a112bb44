package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/semaphore"
)

// Ranged reads of big objects. On AWS one GET stream carries roughly 50-100 MB/s while one core
// inflates gzip at 300 MB/s and more: an object larger than PartSize is read as ranged GETs, up
// to PartsInFlight at once, all pinned to the eTag (or version) of the first answer, and handed
// to the reader in order, each range's bytes as they arrive.
//
// The range being read streams straight from its connection; ranges read ahead of it are held
// in memory, and that memory comes from one budget shared by every object (ReadAhead): an
// object that cannot get budget reads with fewer ranges ahead, down to none (one stream, as
// for a small object), never with more memory. Each range resumes and retries as a whole GET
// does (resumingBody), with its own resume budget.
//
// Why not feature/s3/transfermanager's GetObject: it hands a part to the reader only once the
// whole part is downloaded (decoding waits for the first part), buffers per object (no budget
// shared by the workers), retries a broken part from its start rather than resuming from the
// byte where it broke, and starts a goroutine per Read.

// ReadAhead is a memory budget for ranges read ahead, shared by every object of a Fetcher.
//
// The buffers are mapped outside the Go heap. A buffer given back is kept mapped for the next
// range of its size, and everything kept is unmapped once no range has been read ahead for
// IdleRelease: mapping fresh memory costs a page fault (and its zeroing) per 4 KiB, which on a
// virtual machine took a third of a core at 1 GB/s. What is mapped, in use or kept, never
// exceeds the budget.
type ReadAhead struct {
	sem   *semaphore.Weighted
	size  int64
	inUse atomic.Int64

	mu     sync.Mutex
	kept   [][]byte // given back, still mapped
	mapped int64    // bytes mapped: in use and kept
	idle   *time.Timer
}

// hugePage is the size of a transparent huge page. A buffer of at least half of one takes whole
// ones, and is mapped with huge pages where the system allows.
const hugePage = 2 << 20

// IdleRelease is how long the buffers given back stay mapped once no range is read ahead.
var IdleRelease = 10 * time.Second

// NewReadAhead returns a budget of size bytes.
func NewReadAhead(size int64) *ReadAhead {
	return &ReadAhead{sem: semaphore.NewWeighted(size), size: size}
}

// InUse is the bytes of the budget held now.
func (r *ReadAhead) InUse() int64 {
	if r == nil {
		return 0
	}
	return r.inUse.Load()
}

// Mapped is the bytes mapped now: the buffers in use and those kept for reuse.
func (r *ReadAhead) Mapped() int64 {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mapped
}

// take returns a buffer of n bytes (len 0, cap n; from half a huge page up, cap rounded up to
// whole huge pages) from the budget, or false when the budget has no room for it.
func (r *ReadAhead) take(n int64) ([]byte, bool) {
	if whole := (n + hugePage - 1) / hugePage * hugePage; r != nil && n >= hugePage/2 && whole <= r.size {
		n = whole // whole huge pages (see adviseHuge): the budget counts what a huge page holds
	}
	if r == nil || n > r.size || !r.sem.TryAcquire(n) {
		return nil, false
	}
	r.inUse.Add(n)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.idle != nil {
		r.idle.Stop()
	}
	for i, b := range r.kept {
		if int64(cap(b)) == n {
			r.kept = slices.Delete(r.kept, i, i+1)
			return b[:0], true
		}
	}
	for len(r.kept) > 0 && r.mapped+n > r.size { // kept buffers of other sizes make room
		b := r.kept[len(r.kept)-1]
		r.kept = r.kept[:len(r.kept)-1]
		r.mapped -= int64(cap(b))
		freeBuffer(b)
	}
	r.mapped += n
	return allocBuffer(int(n))[:0], true
}

// give takes back a buffer of take's, and its budget.
func (r *ReadAhead) give(b []byte) {
	n := int64(cap(b))
	r.mu.Lock()
	r.kept = append(r.kept, b[:0])
	if r.inUse.Add(-n) == 0 {
		if r.idle == nil {
			r.idle = time.AfterFunc(IdleRelease, r.release)
		} else {
			r.idle.Reset(IdleRelease)
		}
	}
	r.mu.Unlock()
	r.sem.Release(n)
}

// release unmaps the buffers kept, if no range is read ahead.
func (r *ReadAhead) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inUse.Load() != 0 {
		return
	}
	for _, b := range r.kept {
		r.mapped -= int64(cap(b))
		freeBuffer(b)
	}
	r.kept = nil
}

// firstRange is the size of an object's first ranges: small, so that decoding starts soon.
const firstRange = 1 << 20

// rangeSize is the size of an object's k-th range (from 0): the ranges grow as Mountpoint's
// prefetcher grows its requests, but by waves: the first PartsInFlight ranges are firstRange,
// the next PartsInFlight twice that, and so on up to PartSize. Ranges that all start together
// and arrive at one connection's pace reach the reader in order only as fast as the one it
// waits for: doubling every range kept the reader behind the one growing range (a model of 8
// connections at 25 MB/s feeding a decoder of 82 MB/s: 0.87 of its rate by range, 0.96 by wave).
func (f *Fetcher) rangeSize(k int) int64 {
	return min(int64(firstRange)<<min(k/max(f.PartsInFlight, 1), 20), f.PartSize)
}

// RangeInfo describes one ranged GET, for the trace and the metrics.
type RangeInfo struct {
	Bucket, Key string
	Start, End  int64 // [Start, End)
	Ahead       bool  // read ahead into the budget, not streamed by the reader
}

// openRanged opens an object expected to be larger than PartSize, or of unknown size: its
// first range, then the rest as the reader goes. With no size in the event, the first range is
// PartSize (as the AWS CRT does): an object no larger is one GET, as when its size is known.
func (f *Fetcher) openRanged(ctx context.Context, r Request) (*Object, error) {
	first := min(int64(firstRange), f.PartSize)
	if r.Size <= 0 {
		first = f.PartSize
	}
	in := &s3.GetObjectInput{Bucket: &r.Bucket, Key: &r.Key, Range: aws.String(fmt.Sprintf("bytes=0-%d", first-1))}
	pin(in, r.VersionID, r.ETag)
	asked := f.clock()
	out, wd, cancel, size, err := f.first(ctx, r, in, expect{end: first, size: eventSize(r), etag: r.ETag, version: r.VersionID})
	answered := f.clock().Sub(asked)
	if err != nil {
		if invalidRange(err) { // an empty object
			return f.openSingle(ctx, r)
		}
		return nil, Classify(ctx, fmt.Errorf("s3 GetObject s3://%s/%s (range 0-%d): %w", r.Bucket, r.Key, first-1, err))
	}
	obj := newObject(r, out, size)
	if out.ContentRange == nil { // the server sent the whole object: read it as one stream
		obj.Body = &resumingBody{ctx: ctx, f: f, req: r, obj: obj, body: out.Body, wd: wd, cancel: cancel, end: -1}
		return obj, nil
	}
	end := min(first, size)
	f.onRange(RangeInfo{Bucket: r.Bucket, Key: r.Key, Start: 0, End: end})
	head := &resumingBody{ctx: ctx, f: f, req: r, obj: obj, body: out.Body, wd: wd, cancel: cancel, end: end}
	if end == size { // the object is all in its first range
		obj.Body = head
		return obj, nil
	}
	rr := &rangedReader{f: f, req: r, obj: obj, head: head, next: end, answer: answered}
	if f.AheadWhenWaiting <= 0 || f.slowStream.Load() {
		rr.aheadOn, rr.k = true, 1 // the first range was the first of the first wave
	}
	rr.ctx, rr.cancel = context.WithCancel(ctx)
	obj.Body = rr
	rr.fill() // with ranges ahead, they start now: for an object opened before its reader comes to it (the worker's next), while the object before ends
	return obj, nil
}

func (f *Fetcher) onRange(ri RangeInfo) {
	if f.OnRange != nil {
		f.OnRange(ri)
	}
}

// rangedReader hands out an object's bytes in order, from the range being read (head) and the
// ranges read ahead (ahead, in order). Not safe for concurrent use, as any io.Reader.
type rangedReader struct {
	ctx    context.Context
	cancel context.CancelFunc
	f      *Fetcher
	req    Request
	obj    *Object
	head   io.ReadCloser
	ahead  []io.ReadCloser // in order: ranges read ahead (*prefetch), or the next streamed range opened early
	next   int64           // the offset of the first byte no range covers yet
	k      int             // ranges planned since read-ahead began
	last   int64           // the start of the last range planned
	err    error

	// Ranges are read ahead once the reader is seen waiting for the one it reads (aheadOn):
	// over each window of at least windowBytes and windowTime, the time spent in the range's
	// Read (the GET's first byte included) against the time elapsed, over more than
	// AheadWhenWaiting of it in windowsWaited windows in a row. One stream that keeps up
	// needs nothing ahead, and reads ranges one after the other, each twice the last up to
	// PartSize; once ranges are read ahead, they start again from firstRange and grow by waves.
	aheadOn  bool
	winStart time.Time
	winWait  time.Duration
	winBytes int
	// winsWaited counts the windows in a row the reader waited in.
	winsWaited int

	// What the next object learns (Fetcher.slowStream): the pace of one connection, from the
	// ranges read ahead (each over a connection of its own), against the reader's.
	firstRead time.Time
	inRead    time.Duration // time spent in Read since: waiting for bytes, and copying them
	readBytes int64
	connBytes int64         // bytes of the ranges read ahead, whole
	connTime  time.Duration // and the time they took

	// answer is the longest a GET of this object took to answer (its first byte): the next
	// streamed range is opened early enough to hide it (openNext).
	answer time.Duration
}

// windowBytes and windowTime are how much the reader reads, and for how long at least, between
// two looks at how long it waited: long enough that one GET's first byte on a near S3 (a few
// milliseconds) is not taken for a slow stream. windowsWaited is how many windows in a row it
// must have waited in: on a machine whose cores are all busy decoding, a near S3 is sometimes
// scheduled late once, and one such wait turned reading ahead on for streams that keep up
// (where ranges ahead cost more than they give: 1.45-1.70 against 1.72-1.93 for two readers on
// loopback); a stream slower than its reader makes it wait in every window.
const (
	windowBytes   = 512 << 10
	windowTime    = 25 * time.Millisecond
	windowsWaited = 2
)

func (f *Fetcher) clock() time.Time {
	if f.now != nil {
		return f.now()
	}
	return time.Now()
}

// waited accounts one Read of the range being read, of n bytes, that took from t0 to t1, and
// turns read-ahead on when the reader waited more than AheadWhenWaiting of a window's time in
// windowsWaited windows in a row.
func (rr *rangedReader) waited(t0, t1 time.Time, n int) {
	if rr.winStart.IsZero() {
		rr.winStart = t0
	}
	rr.winWait += t1.Sub(t0)
	rr.winBytes += n
	el := t1.Sub(rr.winStart)
	if rr.winBytes < windowBytes || el < windowTime {
		return
	}
	if float64(rr.winWait) > rr.f.AheadWhenWaiting*float64(el) {
		rr.winsWaited++
	} else {
		rr.winsWaited = 0
	}
	if rr.winsWaited >= windowsWaited {
		rr.aheadOn = true
	}
	rr.winStart, rr.winWait, rr.winBytes = t1, 0, 0
}

func (rr *rangedReader) plan() (start, end int64) {
	size := min(2*(rr.next-rr.last), rr.f.PartSize) // nothing ahead: each range twice the last, so that one read at a slow stream's pace stays short until the reader has been seen waiting
	if rr.aheadOn {
		size = rr.f.rangeSize(rr.k)
		rr.k++
	}
	rr.last = rr.next
	start, end = rr.next, min(rr.next+size, rr.obj.Size)
	rr.next = end
	return start, end
}

// fill starts ranges ahead, once the reader waits, while the object has ranges left, fewer than
// PartsInFlight are in flight, and the budget has room for the next one.
func (rr *rangedReader) fill() {
	for rr.aheadOn && rr.next < rr.obj.Size && 1+len(rr.ahead) < rr.f.PartsInFlight {
		buf, ok := rr.f.ReadAhead.take(rr.f.rangeSize(rr.k)) // the range's size class (the last range may be shorter): buffers are reused by size
		if !ok {
			return
		}
		start, end := rr.plan()
		rr.ahead = append(rr.ahead, rr.f.prefetch(rr.ctx, rr.req, rr.obj, start, end, buf))
	}
}

func (rr *rangedReader) Read(p []byte) (int, error) {
	if rr.err != nil {
		return 0, rr.err
	}
	if rr.firstRead.IsZero() {
		rr.firstRead = rr.f.clock()
	}
	for {
		if rr.head == nil {
			switch {
			case len(rr.ahead) > 0:
				rr.head, rr.ahead = rr.ahead[0], rr.ahead[1:]
			case rr.next < rr.obj.Size: // no range ahead (no budget): stream the next one
				rr.head = rr.streamNext()
			default:
				return 0, io.EOF
			}
		}
		rr.fill()
		var n int
		var err error
		t0 := rr.f.clock()
		n, err = rr.head.Read(p)
		t1 := rr.f.clock()
		rr.inRead += t1.Sub(t0)
		if !rr.aheadOn {
			rr.waited(t0, t1, n)
			rr.openNext()
		}
		rr.readBytes += int64(n)
		if err == io.EOF {
			if pf, ok := rr.head.(*prefetch); ok {
				rr.connBytes += int64(len(pf.buf))
				rr.connTime += pf.took
				rr.learn()
			}
			rr.head.Close()
			rr.head = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		if err != nil {
			rr.err = err
		}
		return n, err
	}
}

// learn tells the Fetcher, after each range read ahead, whether one connection is slower than
// this object's reader: if so, the next object's reader would wait for its stream too, and its
// ranges are read ahead from its start. (Told as the object goes, not at its end: the next
// object is opened before this one ends.) The reader's pace is its bytes over the time it spent
// outside Read (decoding, processing): how fast it goes when its bytes are there, whatever it
// waited.
//
// Connections more than twice as fast as the reader also end the reading ahead of this object:
// one stream keeps up (the reader was seen waiting for a hiccup of S3's), and ranges ahead would
// only add copies and make S3 send in bursts; the reader streams range after range again, and
// is measured again.
func (rr *rangedReader) learn() {
	busy := rr.busy()
	if rr.connTime <= 0 || busy <= 0 {
		return
	}
	conn, read := float64(rr.connBytes)*float64(busy), float64(rr.readBytes)*float64(rr.connTime) // the two rates, times connTime × busy
	rr.f.slowStream.Store(conn < read)
	if conn > 2*read && rr.aheadOn && rr.f.AheadWhenWaiting > 0 {
		rr.aheadOn = false
		rr.winStart, rr.winWait, rr.winBytes, rr.winsWaited = time.Time{}, 0, 0, 0
	}
}

// openNext opens the next range early when nothing is read ahead and the range being streamed
// nears its end, so that its GET's first byte comes while the reader still decodes, instead of
// between the two ranges. Near is a quarter of the range left, or more: the bytes the reader
// reads in twice the longest this object's GETs took to answer. Until the reader's pace is
// known, a GET that took any time at all opens the next range at once. (A GET answered late at
// each range's start made the reader wait at every edge: on a busy machine that wait turned
// reading ahead on for loopback streams that keep up, and ranges ahead there cost more than
// they give.) The body waits on its connection, in the kernel's socket buffer, until the reader
// comes to it; its read deadline starts then.
func (rr *rangedReader) openNext() {
	h, ok := rr.head.(*resumingBody)
	if !ok || len(rr.ahead) > 0 || rr.next >= rr.obj.Size {
		return
	}
	rr.answer = max(rr.answer, h.answered)
	if left := h.end - h.off; left > rr.lead() {
		return
	}
	next := rr.streamNext()
	next.openEarly()
	rr.ahead = append(rr.ahead, next)
}

// lead is how many bytes before the end of the range being streamed the next one is opened.
func (rr *rangedReader) lead() int64 {
	quarter := (rr.next - rr.last) / 4
	if rr.answer <= 0 {
		return quarter
	}
	busy := rr.busy()
	if rr.readBytes < paceBytes || busy <= 0 {
		return math.MaxInt64 // the pace is not known yet: open it now
	}
	hide := float64(rr.readBytes) / busy.Seconds() * 2 * rr.answer.Seconds()
	return max(quarter, int64(min(hide, math.MaxInt64/2)))
}

// busy is the time the reader spent outside Read since its first: its bytes over it are its
// pace, whatever it waited.
func (rr *rangedReader) busy() time.Duration {
	return rr.f.clock().Sub(rr.firstRead) - rr.inRead
}

// paceBytes is how much the reader reads before its pace is taken as known.
const paceBytes = 256 << 10

// streamNext plans the next range, to be streamed by the reader rather than read ahead.
func (rr *rangedReader) streamNext() *resumingBody {
	start, end := rr.plan()
	rr.f.onRange(RangeInfo{Bucket: rr.req.Bucket, Key: rr.req.Key, Start: start, End: end})
	return rr.f.rangeBody(rr.ctx, rr.req, rr.obj, start, end)
}

// rangeBody is the body of the object's bytes [start, end), whose GET is sent at its first Read
// (or by openEarly).
func (f *Fetcher) rangeBody(ctx context.Context, req Request, obj *Object, start, end int64) *resumingBody {
	return &resumingBody{ctx: ctx, f: f, req: req, obj: obj, body: emptyBody{}, off: start, end: end, pending: errStartRange}
}

// errStartRange makes a resumingBody open its range at its first Read: a resume that is not
// counted as one and waits for nothing.
var errStartRange = errors.New("start of a range")

type emptyBody struct{}

func (emptyBody) Read([]byte) (int, error) { return 0, io.EOF }
func (emptyBody) Close() error             { return nil }

func (rr *rangedReader) Close() error {
	rr.cancel()
	if rr.head != nil {
		rr.head.Close()
	}
	for _, p := range rr.ahead {
		p.Close()
	}
	rr.ahead = nil
	return nil
}

// prefetch is a range read ahead into memory of the budget: a goroutine receives its bytes,
// and the reader takes them as they come.
type prefetch struct {
	f      *Fetcher
	cancel context.CancelFunc
	done   chan struct{}
	whole  []byte // the budget's buffer (buf is its first end-start bytes)

	mu    sync.Mutex
	cond  *sync.Cond
	buf   []byte // received so far; len grows as bytes arrive, up to the range's size
	r     int    // read so far
	end   bool
	err   error
	start time.Time     // when its GET was sent
	took  time.Duration // from start to the last byte, once end
}

func (f *Fetcher) prefetch(ctx context.Context, req Request, obj *Object, start, end int64, buf []byte) *prefetch {
	ctx, cancel := context.WithCancel(ctx)
	p := &prefetch{f: f, cancel: cancel, done: make(chan struct{}), buf: buf[: 0 : end-start], whole: buf, start: f.clock()}
	p.cond = sync.NewCond(&p.mu)
	f.onRange(RangeInfo{Bucket: req.Bucket, Key: req.Key, Start: start, End: end, Ahead: true})
	go func() {
		defer close(p.done)
		body := f.rangeBody(ctx, req, obj, start, end)
		defer body.Close()
		for {
			p.mu.Lock()
			room := p.buf[len(p.buf):cap(p.buf)]
			p.mu.Unlock()
			if len(room) == 0 {
				p.finish(nil)
				return
			}
			n, err := body.Read(room[:min(len(room), 256<<10)])
			p.mu.Lock()
			p.buf = p.buf[:len(p.buf)+n]
			p.cond.Broadcast()
			p.mu.Unlock()
			if err == io.EOF {
				err = nil
				if int64(len(p.buf)) < end-start {
					err = io.ErrUnexpectedEOF
				}
				p.finish(err)
				return
			}
			if err != nil {
				p.finish(err)
				return
			}
		}
	}()
	return p
}

func (p *prefetch) finish(err error) {
	p.mu.Lock()
	p.end, p.err, p.took = true, err, p.f.clock().Sub(p.start)
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *prefetch) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.r == len(p.buf) && !p.end {
		p.cond.Wait()
	}
	if p.r == len(p.buf) {
		if p.err != nil {
			return 0, p.err
		}
		return 0, io.EOF
	}
	n := copy(b, p.buf[p.r:])
	p.r += n
	return n, nil
}

// Close stops the range's download if it runs, waits for it, and gives its memory back.
func (p *prefetch) Close() error {
	p.cancel()
	<-p.done
	p.mu.Lock()
	p.buf = nil
	p.mu.Unlock()
	p.f.ReadAhead.give(p.whole)
	return nil
}
