// Package fetch streams objects from S3: one GetObject per object, pinned to the version the
// notification named (versionId, or If-Match on its eTag), with the body handed to the caller as
// a stream, never held whole in memory. Every GET has a deadline for its answer and for each
// read of its body; a body that breaks or stalls is resumed with a Range GET from the first byte
// not yet read. Its error table (errors.go) decides which S3 errors are the object's fault
// (ErrPermanent) and which are the world's (ErrUnavailable).
package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// API is the part of the S3 client Palleto calls. *s3.Client implements it.
type API interface {
	GetObject(context.Context, *s3.GetObjectInput, ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// Request names the object to fetch and the version the event saw.
type Request struct {
	Bucket, Key string
	VersionID   string // pin to this version when set
	ETag        string // else require this eTag (If-Match) when set
	// Size is the object's size as the event says (0: unknown): larger than PartSize, it is read
	// in ranges.
	Size int64
}

// Object is an open object. The caller must Close Body.
type Object struct {
	Body      io.ReadCloser
	Size      int64 // Content-Length, -1 when unknown
	ETag      string
	VersionID string
}

// Defaults of the Fetcher's deadlines.
const (
	DefaultFirstByteTimeout = 30 * time.Second
	DefaultReadTimeout      = 60 * time.Second
)

// Fetcher opens objects. Safe for concurrent use; set its fields before the first Open.
type Fetcher struct {
	api API
	// Resumes is how many times a broken or stalled body (connection reset, cut, short read, no
	// byte for ReadTimeout) is resumed with a Range request from the byte where it broke, pinned
	// to the same eTag (default 5).
	Resumes int
	// ResumeBackoff is the wait before the first resume, doubled for each next one (default
	// 200ms).
	ResumeBackoff time.Duration
	// FirstByteTimeout bounds the wait for a GET's answer (its headers). ReadTimeout bounds each
	// read of a body: a body that sends nothing for that long is abandoned and resumed.
	FirstByteTimeout, ReadTimeout time.Duration
	// OnResume, when set, is told of each resume: the object, the offset and the cause.
	OnResume func(bucket, key string, offset int64, cause error)
	// PartSize > 0 reads an object larger than it in ranges (ranged.go), up to PartsInFlight at
	// once, those ahead of the reader held in ReadAhead's budget (nil: none ahead).
	PartSize      int64
	PartsInFlight int
	ReadAhead     *ReadAhead
	// AheadWhenWaiting is the share of its time the reader of an object may spend waiting for
	// the range it reads (in two windows of 512 KiB and 25 ms at least in a row) before ranges
	// are read ahead of it (default 0.25; 0: always ahead):
	// when one stream keeps up with the reader (S3 nearby, a slow processor), ranges are read
	// one after the other and no memory is held ahead.
	AheadWhenWaiting float64
	now              func() time.Time // the clock of the waiting measure (tests replace it)
	// slowStream says the last object read with ranges ahead found one connection slower than
	// its reader: the next object reads ranges ahead from its start, without first being seen
	// waiting.
	slowStream atomic.Bool
	// OnRange, when set, is told of each ranged GET.
	OnRange func(RangeInfo)
	// OnGet, when set, is told how long each GET took to answer (its headers), and its error.
	OnGet func(took time.Duration, err error)
}

// DefaultAheadWhenWaiting is Fetcher.AheadWhenWaiting's default.
const DefaultAheadWhenWaiting = 0.25

// New returns a Fetcher using api, with the default budget and deadlines.
func New(api API) *Fetcher {
	return &Fetcher{api: api, Resumes: 5, ResumeBackoff: 200 * time.Millisecond, FirstByteTimeout: DefaultFirstByteTimeout, ReadTimeout: DefaultReadTimeout,
		AheadWhenWaiting: DefaultAheadWhenWaiting}
}

// ErrStalled is the cause of a resume when a GET or its body sent nothing within its deadline.
var ErrStalled = errors.New("S3 sent nothing within the deadline")

// watchdog cancels a request's context when its deadline passes without progress.
type watchdog struct {
	timer *time.Timer
	fired atomic.Bool
}

func newWatchdog(d time.Duration, cancel context.CancelFunc) *watchdog {
	w := &watchdog{}
	w.timer = time.AfterFunc(d, func() { w.fired.Store(true); cancel() })
	return w
}

// get makes one GetObject with the first-byte deadline; on success the watchdog, re-armed for
// reads, guards the body, and cancel must be called when the body is done.
func (f *Fetcher) get(ctx context.Context, in *s3.GetObjectInput) (*s3.GetObjectOutput, *watchdog, context.CancelFunc, error) {
	reqCtx, cancel := context.WithCancel(ctx)
	wd := newWatchdog(f.FirstByteTimeout, cancel)
	asked := time.Now()
	out, err := f.api.GetObject(reqCtx, in)
	if f.OnGet != nil {
		f.OnGet(time.Since(asked), err)
	}
	if err != nil {
		wd.timer.Stop()
		cancel()
		if wd.fired.Load() && ctx.Err() == nil {
			err = fmt.Errorf("%w: no answer in %s (first-byte timeout): %w", ErrStalled, f.FirstByteTimeout, err)
		}
		return nil, nil, nil, err
	}
	wd.timer.Reset(f.ReadTimeout)
	return out, wd, cancel, nil
}

// Open starts a GetObject and returns the streaming body: one stream, or ranges for an object
// the event says is larger than PartSize, or whose size the event does not give (its first
// answer tells it). Every answer is checked (answer.go) before a byte of it is handed out.
func (f *Fetcher) Open(ctx context.Context, r Request) (*Object, error) {
	if f.PartSize > 0 && (r.Size > f.PartSize || r.Size <= 0) && f.PartsInFlight > 1 {
		return f.openRanged(ctx, r)
	}
	return f.openSingle(ctx, r)
}

func (f *Fetcher) openSingle(ctx context.Context, r Request) (*Object, error) {
	in := &s3.GetObjectInput{Bucket: &r.Bucket, Key: &r.Key}
	pin(in, r.VersionID, r.ETag)
	out, wd, cancel, size, err := f.first(ctx, r, in, expect{end: -1, size: eventSize(r), etag: r.ETag, version: r.VersionID})
	if err != nil {
		return nil, Classify(ctx, fmt.Errorf("s3 GetObject s3://%s/%s: %w", r.Bucket, r.Key, err))
	}
	obj := newObject(r, out, size)
	obj.Body = &resumingBody{ctx: ctx, f: f, req: r, obj: obj, body: out.Body, wd: wd, cancel: cancel, end: -1}
	return obj, nil
}

// Probe asks S3 for the first byte of an object: the check that S3 answers again after a
// failure of the world. It returns nil when S3 answered, even that the object is gone, and an
// error wrapping ErrUnavailable when S3 still cannot be used.
func (f *Fetcher) Probe(ctx context.Context, bucket, key string) error {
	out, wd, cancel, err := f.get(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key, Range: aws.String("bytes=0-0")})
	if err == nil {
		wd.timer.Stop()
		out.Body.Close()
		cancel()
		return nil
	}
	err = Classify(ctx, fmt.Errorf("s3 GetObject s3://%s/%s (probe): %w", bucket, key, err))
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	return nil
}

// pin makes in read one version of the object: versionID when there is one, else the object
// only while its eTag is still etag (If-Match; quoted as S3 wants it).
func pin(in *s3.GetObjectInput, versionID, etag string) {
	switch {
	case versionID != "":
		in.VersionId = aws.String(versionID)
	case etag != "":
		if !strings.HasPrefix(etag, "\"") {
			etag = "\"" + etag + "\""
		}
		in.IfMatch = aws.String(etag)
	}
}

// resumingBody reads an object's body and, when the connection breaks or stalls, continues it
// with a Range GET from the first byte not yet read, pinned to the version first read (its
// versionId, or If-Match its eTag), so the bytes handed out are exactly the object's.
type resumingBody struct {
	ctx     context.Context
	f       *Fetcher
	req     Request
	obj     *Object
	body    io.ReadCloser
	wd      *watchdog
	cancel  context.CancelFunc // of the current GET
	off     int64              // the object's offset of the next byte to hand out
	end     int64              // the offset after the last byte to read; -1: the object's end
	pending error              // a break seen while returning data, dealt with on the next Read
	resumes int

	// early delivers the outcome of the range's first GET, started by openEarly before its first
	// Read; earlyCancel ends that GET's context.
	early       chan error
	earlyCancel context.CancelFunc

	// answered is how long the last GET took to answer (its first byte), on the Fetcher's clock.
	answered time.Duration
}

// openEarly starts the range's first GET now, while the reader still reads the range before
// it, so that its first byte is there when the reader comes to it. The body waits on its
// connection (in the kernel's socket buffer) until then.
func (b *resumingBody) openEarly() {
	ctx, cancel := context.WithCancel(b.ctx)
	b.early, b.earlyCancel = make(chan error, 1), cancel
	go func() {
		err := b.open(ctx, errStartRange)
		if err == nil && b.wd != nil {
			b.wd.timer.Stop() // the body's read deadline runs from the reader's first Read
		}
		b.early <- err
	}()
}

// want is the offset the body must reach: its range's end, or the object's size (-1: unknown).
func (b *resumingBody) want() int64 {
	if b.end >= 0 {
		return b.end
	}
	return b.obj.Size
}

func (b *resumingBody) Read(p []byte) (int, error) {
	if b.early != nil {
		err := <-b.early
		b.early = nil
		if err != nil {
			return 0, err
		}
		if b.pending == errStartRange {
			b.pending = nil
		}
	}
	for {
		if b.pending == nil {
			if b.wd != nil {
				b.wd.timer.Reset(b.f.ReadTimeout)
			}
			n, err := b.body.Read(p)
			if b.wd != nil {
				b.wd.timer.Stop() // the deadline is the body's, not the reader's: a slow consumer is no stall
			}
			if w := b.want(); w >= 0 && b.off+int64(n) > w { // none of it is handed out: read again from off
				n, err = 0, fmt.Errorf("%w: s3 GetObject s3://%s/%s: the body goes on past byte %d, the end of its answer", ErrBadAnswer, b.req.Bucket, b.req.Key, w)
			}
			b.off += int64(n)
			if err == io.EOF && b.want() >= 0 && b.off < b.want() {
				err = io.ErrUnexpectedEOF // the server or a proxy cut the body short
			}
			if err != nil && err != io.EOF && b.wd != nil && b.wd.fired.Load() && b.ctx.Err() == nil {
				err = fmt.Errorf("%w: no byte in %s (read timeout): %w", ErrStalled, b.f.ReadTimeout, err)
			}
			if err == nil || err == io.EOF {
				return n, err
			}
			b.pending = err
			if n > 0 {
				return n, nil
			}
		}
		cause := b.pending
		b.pending = nil
		if err := b.resume(cause); err != nil {
			return 0, err
		}
	}
}

func (b *resumingBody) stopGET() {
	if b.wd != nil {
		b.wd.timer.Stop()
		b.wd = nil
	}
	b.body.Close()
	if b.cancel != nil {
		b.cancel()
		b.cancel = nil
	}
	b.body = io.NopCloser(strings.NewReader("")) // until a new body is open
}

func (b *resumingBody) resume(cause error) error {
	where := fmt.Sprintf("s3://%s/%s", b.req.Bucket, b.req.Key)
	if b.ctx.Err() != nil {
		return b.ctx.Err()
	}
	b.stopGET()
	if cause != errStartRange { // the first GET of a range is no resume
		if b.resumes >= b.f.Resumes {
			return fmt.Errorf("%w: s3 GetObject %s: body broken at byte %d, %d resumes spent: %w", ErrUnavailable, where, b.off, b.resumes, cause)
		}
		wait := b.f.ResumeBackoff << b.resumes
		b.resumes++
		if b.f.OnResume != nil {
			b.f.OnResume(b.req.Bucket, b.req.Key, b.off, cause)
		}
		select {
		case <-b.ctx.Done():
			return b.ctx.Err()
		case <-time.After(wait):
		}
	}
	return b.open(b.ctx, cause)
}

// open starts a GET of the body's bytes from off to end, pinned to the object's version, on
// ctx (a child of b.ctx). A failure worth another try within the budget is left pending.
func (b *resumingBody) open(ctx context.Context, cause error) error {
	where := fmt.Sprintf("s3://%s/%s", b.req.Bucket, b.req.Key)
	rng := fmt.Sprintf("bytes=%d-", b.off)
	if b.end >= 0 {
		rng += fmt.Sprint(b.end - 1)
	}
	in := &s3.GetObjectInput{Bucket: &b.req.Bucket, Key: &b.req.Key, Range: aws.String(rng)}
	pin(in, b.obj.VersionID, b.obj.ETag)
	asked := b.f.clock()
	out, wd, cancel, err := b.f.get(ctx, in)
	b.answered = b.f.clock().Sub(asked)
	if err != nil {
		err = Classify(ctx, fmt.Errorf("s3 GetObject %s (range from byte %d, after: %v): %w", where, b.off, cause, err))
		if errors.Is(err, ErrUnavailable) {
			b.pending = err // the resume itself failed: try again, within the budget
			return nil
		}
		return err
	}
	e := expect{start: b.off, end: b.end, size: b.obj.Size, etag: b.obj.ETag, version: b.obj.VersionID}
	if _, err := e.check(out); err != nil { // retried as a cut body is: none of it is handed out
		wd.timer.Stop()
		out.Body.Close()
		cancel()
		b.pending = fmt.Errorf("s3 GetObject %s (%s): %w", where, rng, err)
		return nil
	}
	b.body, b.wd, b.cancel = out.Body, wd, cancel
	if out.ContentRange == nil { // a server that ignored Range sent it all again (check found its size right)
		if _, err := io.CopyN(io.Discard, out.Body, b.off); err != nil {
			b.pending = err
		}
		if b.end >= 0 {
			b.body = struct {
				io.Reader
				io.Closer
			}{io.LimitReader(out.Body, b.end-b.off), out.Body}
		}
	}
	return nil
}

func (b *resumingBody) Close() error {
	if b.early != nil { // a GET opened early and never read: stop it, and wait for its goroutine
		b.earlyCancel()
		<-b.early
		b.early = nil
	}
	if b.earlyCancel != nil {
		defer b.earlyCancel()
	}
	if b.wd != nil {
		b.wd.timer.Stop()
	}
	err := b.body.Close()
	if b.cancel != nil {
		b.cancel()
	}
	return err
}
