package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// rangeS3 serves one object as S3 does: Range (bytes=a-b, bytes=a-), If-Match, Content-Range.
// cut, when set, says after how many bytes the n-th response (from 0) breaks; after, when set,
// runs after the n-th request is answered (an overwrite between ranges, say).
type rangeS3 struct {
	API
	mu     sync.Mutex
	data   []byte
	etag   string
	cut    map[int]int
	after  func(n int)
	ranges []string
}

func (s *rangeS3) GetObject(ctx context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	s.mu.Lock()
	n := len(s.ranges)
	s.ranges = append(s.ranges, aws.ToString(in.Range))
	data, etag := s.data, s.etag
	s.mu.Unlock()
	if s.after != nil {
		defer s.after(n)
	}
	if in.IfMatch != nil && *in.IfMatch != `"`+etag+`"` {
		return nil, &smithy.GenericAPIError{Code: "PreconditionFailed"}
	}
	out := &s3.GetObjectOutput{ETag: aws.String(`"` + etag + `"`)}
	start, end := 0, len(data)
	if in.Range != nil {
		var a, b int
		if k, _ := fmt.Sscanf(*in.Range, "bytes=%d-%d", &a, &b); k == 2 {
			start, end = a, min(b+1, len(data))
		} else if _, err := fmt.Sscanf(*in.Range, "bytes=%d-", &a); err == nil {
			start = a
		}
		if start >= len(data) {
			return nil, &smithy.GenericAPIError{Code: "InvalidRange"}
		}
		out.ContentRange = aws.String(fmt.Sprintf("bytes %d-%d/%d", start, end-1, len(data)))
	}
	part := data[start:end]
	out.ContentLength = aws.Int64(int64(len(part)))
	var body io.Reader = bytes.NewReader(part)
	if c, ok := s.cut[n]; ok && c < len(part) {
		body = io.MultiReader(bytes.NewReader(part[:c]), errReader{syscall.ECONNRESET})
	}
	out.Body = io.NopCloser(body)
	return out, nil
}

func ranged(api API, budget int64) *Fetcher {
	f := New(api)
	f.ResumeBackoff = time.Millisecond
	f.PartSize, f.PartsInFlight = 64<<10, 4
	f.AheadWhenWaiting = 0 // ahead at once: these tests are about the ranges ahead
	if budget > 0 {
		f.ReadAhead = NewReadAhead(budget)
	}
	return f
}

func randomData(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 1))
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	return b
}

// TestRangedReadsGiveTheObjectInOrder: objects of 0 and 1 byte, exactly one part, one part and
// one byte, and many parts, read with ranges ahead and without budget, give their bytes exactly;
// the budget is all back afterwards. (Their events give no size: each is opened with a range.)
func TestRangedReadsGiveTheObjectInOrder(t *testing.T) {
	for _, size := range []int{0, 1, 64 << 10, 64<<10 + 1, 3<<20 + 17} {
		for _, budget := range []int64{0, 512 << 10} {
			t.Run(fmt.Sprintf("%d bytes, budget %d", size, budget), func(t *testing.T) {
				data := randomData(size)
				api := &rangeS3{data: data, etag: "e1"}
				f := ranged(api, budget)
				var ahead int
				f.OnRange = func(ri RangeInfo) {
					if ri.Ahead {
						ahead++
					}
				}
				obj, err := f.Open(context.Background(), Request{Bucket: "b", Key: "k", ETag: "e1"})
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(obj.Body)
				obj.Body.Close()
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("read %d bytes (%v), want the %d bytes of the object", len(got), err, size)
				}
				if budget > 0 && size > 1<<20 && ahead == 0 {
					t.Errorf("no range was read ahead with a budget: %v", api.ranges)
				}
				if budget == 0 && ahead > 0 {
					t.Errorf("%d ranges read ahead without budget", ahead)
				}
				if f.ReadAhead.InUse() != 0 {
					t.Errorf("%d bytes of the budget still held after Close", f.ReadAhead.InUse())
				}
			})
		}
	}
}

// TestRangeCutMidBodyIsResumed: a range that breaks mid-body resumes from the byte where it
// broke, within that range.
func TestRangeCutMidBodyIsResumed(t *testing.T) {
	data := randomData(1 << 20)
	api := &rangeS3{data: data, etag: "e", cut: map[int]int{2: 1000}}
	f := ranged(api, 512<<10)
	var resumedAt []int64
	f.OnResume = func(_, _ string, off int64, _ error) { resumedAt = append(resumedAt, off) }
	obj, err := f.Open(context.Background(), Request{Bucket: "b", Key: "k", Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj.Body)
	obj.Body.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes (%v)", len(got), err)
	}
	if len(resumedAt) != 1 {
		t.Fatalf("resumes at %v, want one; requests %v", resumedAt, api.ranges)
	}
	found := false
	for _, r := range api.ranges {
		var a, b int64
		if k, _ := fmt.Sscanf(r, "bytes=%d-%d", &a, &b); k == 2 && a == resumedAt[0] && b > a {
			found = true
		}
	}
	if !found {
		t.Errorf("no request resumed from byte %d to its range's end: %v", resumedAt[0], api.ranges)
	}
}

// TestObjectOverwrittenBetweenRangesIsPermanent: every range is pinned to the first answer's
// eTag; an object overwritten after the first range fails permanently, never reads as a mix.
func TestObjectOverwrittenBetweenRangesIsPermanent(t *testing.T) {
	data := randomData(1 << 20)
	api := &rangeS3{data: data, etag: "e1"}
	api.after = func(n int) {
		if n == 0 {
			api.mu.Lock()
			api.data, api.etag = bytes.Repeat([]byte("x"), 1<<20), "e2"
			api.mu.Unlock()
		}
	}
	f := ranged(api, 512<<10)
	obj, err := f.Open(context.Background(), Request{Bucket: "b", Key: "k", Size: 1 << 20}) // no eTag in the event: pinned by the first answer
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj.Body)
	obj.Body.Close()
	if !errors.Is(err, ErrPermanent) || !strings.Contains(err.Error(), "overwritten") {
		t.Fatalf("after %d bytes: %v, want a permanent 'overwritten' error", len(got), err)
	}
	if bytes.Contains(got, []byte("xxxxxxxx")) {
		t.Fatal("bytes of the new object were handed out with the old one's")
	}
}

// TestClosingMidwayGivesTheBudgetBack: a reader closed before the end (a processor that fails)
// stops its ranges and frees their memory.
func TestClosingMidwayGivesTheBudgetBack(t *testing.T) {
	api := &rangeS3{data: randomData(2 << 20), etag: "e"}
	f := ranged(api, 512<<10)
	obj, err := f.Open(context.Background(), Request{Bucket: "b", Key: "k", Size: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	io.CopyN(io.Discard, obj.Body, 200<<10)
	if f.ReadAhead.InUse() == 0 {
		t.Fatal("nothing read ahead")
	}
	obj.Body.Close()
	if f.ReadAhead.InUse() != 0 {
		t.Fatalf("%d bytes of the budget held after Close", f.ReadAhead.InUse())
	}
}

// TestReadAheadKeepsBuffersWithinTheBudget: buffers given back are reused for ranges of their
// size; a range of another size unmaps kept buffers first, so that what is mapped never exceeds
// the budget; the buffers kept are unmapped once nothing is read ahead (release, which the
// idle timer runs).
func TestReadAheadKeepsBuffersWithinTheBudget(t *testing.T) {
	const mib = 1 << 20
	r := NewReadAhead(8 * mib)
	a, ok1 := r.take(4 * mib)
	b, ok2 := r.take(4 * mib)
	if _, ok := r.take(mib); !ok1 || !ok2 || ok {
		t.Fatalf("takes of 4, 4 and 1 MiB from 8: %v %v %v, want true true false", ok1, ok2, ok)
	}
	a = append(a, 'x') // the pages are touched, as a range's bytes would be
	r.give(a)
	c, ok := r.take(4 * mib)
	if !ok || &c[:1][0] != &a[0] {
		t.Errorf("a kept buffer of the same size was not reused")
	}
	r.give(c)
	r.give(b)
	if got := r.Mapped(); got != 8*mib {
		t.Errorf("mapped %d after giving back, want the 8 MiB kept", got)
	}
	if r.idle == nil {
		t.Error("no idle release was scheduled once nothing was in use")
	}
	d, ok := r.take(8 * mib) // another size: both 4 MiB buffers go first
	if !ok || cap(d) != 8*mib {
		t.Fatalf("take of 8 MiB: %v, cap %d", ok, cap(d))
	}
	if got := r.Mapped(); got != 8*mib {
		t.Errorf("mapped %d with one 8 MiB buffer in use, want 8 MiB", got)
	}
	r.release() // something in use: nothing is unmapped
	if got := r.Mapped(); got != 8*mib {
		t.Errorf("release with a buffer in use left %d mapped, want 8 MiB", got)
	}
	r.give(d)
	r.release()
	if got, used := r.Mapped(), r.InUse(); got != 0 || used != 0 {
		t.Errorf("after the idle release: mapped %d, in use %d; want 0, 0", got, used)
	}
}

// A buffer of at least half a huge page takes whole ones, and the budget counts them (with
// huge pages, touching the first byte commits 2 MiB); a smaller one takes its size; a budget
// smaller than a huge page still gives a buffer of its size.
func TestReadAheadCountsWholeHugePages(t *testing.T) {
	const mib = 1 << 20
	r := NewReadAhead(8 * mib)
	for _, c := range []struct{ take, cap int64 }{{mib, 2 * mib}, {3 * mib, 4 * mib}, {64 << 10, 64 << 10}} {
		b, ok := r.take(c.take)
		if !ok || int64(cap(b)) != c.cap {
			t.Errorf("take(%d): %v, cap %d; want a buffer of %d", c.take, ok, cap(b), c.cap)
		}
		defer r.give(b)
	}
	if used := r.InUse(); used != 6*mib+64<<10 {
		t.Errorf("in use %d, want %d: what the buffers hold", used, 6*mib+64<<10)
	}
	small := NewReadAhead(mib)
	if b, ok := small.take(mib); !ok || cap(b) != mib {
		t.Errorf("take of 1 MiB from a budget of 1 MiB: %v, cap %d", ok, cap(b))
	}
}

// clockedBody is a range's body whose every Read advances a fake clock by delay: a connection
// slower (delay > 0) or faster (delay 0) than its reader, with no real time involved.
type clockedBody struct {
	io.ReadCloser
	now   *atomic.Int64 // nanoseconds
	delay time.Duration
}

func (c clockedBody) Read(p []byte) (int, error) {
	c.now.Add(int64(c.delay))
	return c.ReadCloser.Read(p[:min(len(p), 32<<10)])
}

type clockedS3 struct {
	*rangeS3
	now   *atomic.Int64
	delay time.Duration
}

func (c clockedS3) GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	out, err := c.rangeS3.GetObject(ctx, in, opts...)
	if err == nil {
		out.Body = clockedBody{out.Body, c.now, c.delay}
	}
	return out, err
}

// TestRangesAheadOnlyWhenTheReaderWaits: with a connection that keeps up with the reader (its
// reads take no time), the object is read range after range with nothing ahead; with one the
// reader waits for (each read of 32 KiB takes 10 ms while the reader takes none), ranges are read
// ahead, and the bytes are the same.
func TestRangesAheadOnlyWhenTheReaderWaits(t *testing.T) {
	data := randomData(4 << 20)
	for _, c := range []struct {
		delay     time.Duration
		wantAhead bool
	}{{0, false}, {10 * time.Millisecond, true}} {
		t.Run(fmt.Sprint(c.delay), func(t *testing.T) {
			var now atomic.Int64
			f := New(clockedS3{&rangeS3{data: data, etag: "e1"}, &now, c.delay})
			f.ResumeBackoff = time.Millisecond
			f.PartSize, f.PartsInFlight = 1<<20, 4
			f.ReadAhead = NewReadAhead(8 << 20)
			f.now = func() time.Time { return time.Unix(0, now.Load()) }
			ahead := 0
			f.OnRange = func(ri RangeInfo) {
				if ri.Ahead {
					ahead++
				}
			}
			obj, err := f.Open(context.Background(), Request{Bucket: "b", Key: "k", ETag: "e1", Size: int64(len(data))})
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(obj.Body)
			obj.Body.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes (%v), want the %d bytes of the object", len(got), err, len(data))
			}
			if (ahead > 0) != c.wantAhead {
				t.Errorf("%d ranges read ahead with reads of %v; want some: %v", ahead, c.delay, c.wantAhead)
			}
		})
	}
}

// gatedS3 tells of every GET it is asked for, and holds the GETs that hold says, until their
// context ends.
type gatedS3 struct {
	*rangeS3
	asked chan string
	hold  func(rng string) bool
}

func (g gatedS3) GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	g.asked <- aws.ToString(in.Range)
	if g.hold != nil && g.hold(aws.ToString(in.Range)) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return g.rangeS3.GetObject(ctx, in, opts...)
}

// nextGET waits for the next GET asked of a gatedS3 (10 s at most: after what), and fails unless
// it is for want.
func nextGET(t *testing.T, asked <-chan string, want, after string) {
	t.Helper()
	select {
	case r := <-asked:
		if r != want {
			t.Fatalf("after %s: next GET for %q, want %q", after, r, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s, and no GET for the next range", after)
	}
}

// TestNextRangeIsOpenedBeforeTheStreamEnds: with nothing read ahead, the next range's GET is
// asked for once a quarter of the range being streamed is left, not when the reader reaches its
// end; the object's bytes are the same, each range asked for once. Closing the object while such
// a GET has not answered ends it.
func TestNextRangeIsOpenedBeforeTheStreamEnds(t *testing.T) {
	data := randomData(5 << 20)
	newFetcher := func(g gatedS3) (*Fetcher, *atomic.Int32) {
		f := New(g)
		f.PartSize, f.PartsInFlight = 4<<20, 4
		f.ReadAhead = NewReadAhead(8 << 20)
		f.now = func() time.Time { return time.Unix(0, 0) } // no time passes: the reader is never seen waiting, nothing is read ahead
		var planned atomic.Int32
		f.OnRange = func(ri RangeInfo) {
			if ri.Ahead {
				t.Errorf("range %d-%d read ahead", ri.Start, ri.End)
			}
			planned.Add(1)
		}
		return f, &planned
	}
	t.Run("read", func(t *testing.T) {
		g := gatedS3{rangeS3: &rangeS3{data: data, etag: "e1"}, asked: make(chan string, 64)}
		f, planned := newFetcher(g)
		obj, err := f.Open(context.Background(), Request{Bucket: "b", Key: "k", ETag: "e1", Size: int64(len(data))})
		if err != nil {
			t.Fatal(err)
		}
		defer obj.Body.Close()
		if r := <-g.asked; r != "bytes=0-1048575" {
			t.Fatalf("first GET for %q", r)
		}
		got := make([]byte, len(data))
		if _, err := io.ReadFull(obj.Body, got[:512<<10]); err != nil {
			t.Fatal(err)
		}
		if n := planned.Load(); n != 1 {
			t.Fatalf("half of the first range read: %d ranges planned, want 1", n)
		}
		if _, err := io.ReadFull(obj.Body, got[512<<10:768<<10]); err != nil {
			t.Fatal(err)
		}
		nextGET(t, g.asked, "bytes=1048576-3145727", "a quarter of the first range left")
		if _, err := io.ReadFull(obj.Body, got[768<<10:]); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatal("the bytes read are not the object's")
		}
		close(g.asked)
		want := []string{"bytes=3145728-5242879"}
		var rest []string
		for r := range g.asked {
			rest = append(rest, r)
		}
		if fmt.Sprint(rest) != fmt.Sprint(want) {
			t.Errorf("then GETs for %q, want %q", rest, want)
		}
	})
	t.Run("closed", func(t *testing.T) {
		g := gatedS3{rangeS3: &rangeS3{data: data, etag: "e1"}, asked: make(chan string, 64),
			hold: func(rng string) bool { return rng != "bytes=0-1048575" }}
		f, _ := newFetcher(g)
		obj, err := f.Open(context.Background(), Request{Bucket: "b", Key: "k", ETag: "e1", Size: int64(len(data))})
		if err != nil {
			t.Fatal(err)
		}
		<-g.asked
		if _, err := io.ReadFull(obj.Body, make([]byte, 900<<10)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-g.asked: // the second range's GET, held
		case <-time.After(10 * time.Second):
			t.Fatal("a tenth of the first range left, and no GET for the next one")
		}
		obj.Body.Close() // returns once the held GET has ended
	})
}

// TestNextObjectReadsAheadFromItsStartAfterASlowStream: once an object's ranges ahead arrived
// slower per connection than its reader read, the next object starts its ranges ahead at Open,
// before its first Read (an object opened early then has them coming while the one before
// ends); connections faster than the reader end that, and stop the reading ahead of the object
// that measured them when they are more than twice as fast.
func TestNextObjectReadsAheadFromItsStartAfterASlowStream(t *testing.T) {
	data := randomData(8 << 20)
	var now atomic.Int64
	f := New(&rangeS3{data: data, etag: "e1"})
	f.PartSize, f.PartsInFlight = 1<<20, 4
	f.ReadAhead = NewReadAhead(8 << 20)
	f.now = func() time.Time { return time.Unix(0, now.Load()) }
	var ahead atomic.Int32
	f.OnRange = func(ri RangeInfo) {
		if ri.Ahead {
			ahead.Add(1)
		}
	}
	open := func() (*rangedReader, int32) {
		t.Helper()
		ahead.Store(0)
		obj, err := f.Open(context.Background(), Request{Bucket: "b", Key: "k", ETag: "e1", Size: int64(len(data))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { obj.Body.Close() })
		return obj.Body.(*rangedReader), ahead.Load()
	}
	if _, n := open(); n != 0 {
		t.Errorf("nothing learned yet: %d ranges ahead at Open, want none", n)
	}
	f.slowStream.Store(true)
	rr, n := open()
	if n != int32(f.PartsInFlight-1) || !rr.aheadOn {
		t.Errorf("after a slow stream: %d ranges ahead at Open (reading ahead: %v), want %d", n, rr.aheadOn, f.PartsInFlight-1)
	}
	// What the reader learns, range by range: its pace (its bytes over the time it spent outside
	// Read) against one connection's (the ranges ahead: bytes over the time each took). Here the
	// reader spent 1 s waiting in Read and 1 s working, since its first Read 2 s ago.
	for _, c := range []struct {
		name             string
		read, conn       int64 // MB over 1 s of reading; MB over 1 s of one connection
		slow, stillAhead bool
	}{
		{"connection slower than the reader", 80, 25, true, true},
		{"connection faster, not twice", 80, 120, false, true},
		{"connection more than twice as fast", 80, 400, false, false},
	} {
		rr.aheadOn = true
		rr.firstRead, rr.inRead = time.Unix(0, now.Load()-int64(2*time.Second)), time.Second
		rr.readBytes, rr.connBytes, rr.connTime = c.read<<20, c.conn<<20, time.Second
		rr.learn()
		if f.slowStream.Load() != c.slow || rr.aheadOn != c.stillAhead {
			t.Errorf("%s: the next object reads ahead from its start: %v, want %v; this one still reads ahead: %v, want %v",
				c.name, f.slowStream.Load(), c.slow, rr.aheadOn, c.stillAhead)
		}
	}
	if _, n := open(); n != 0 {
		t.Errorf("after connections faster than the reader: %d ranges ahead at Open, want none", n)
	}
}

// TestOneWaitIsNoSlowStream: the reader is seen waiting for its stream only when it waited over
// two windows in a row. One window with a wait (a busy machine that scheduled S3 late once, a
// GET answered late at a range's edge) followed by one without leaves the ranges streamed; two
// in a row turn reading ahead on.
func TestOneWaitIsNoSlowStream(t *testing.T) {
	f := New(nil)
	rr := &rangedReader{f: f}
	t0 := time.Unix(0, 0)
	window := func(waited time.Duration) {
		// one window: 512 KiB in 40 ms, of which waited in Read
		start := t0
		t0 = t0.Add(40 * time.Millisecond)
		rr.waited(start, start.Add(waited), 256<<10)
		rr.waited(t0.Add(-time.Millisecond), t0, 256<<10)
	}
	for i, c := range []struct {
		waited time.Duration
		ahead  bool
	}{
		{0, false},
		{20 * time.Millisecond, false}, // half of a window: once is a hiccup
		{0, false},
		{20 * time.Millisecond, false},
		{20 * time.Millisecond, true}, // twice in a row: a stream slower than its reader
	} {
		window(c.waited)
		if rr.aheadOn != c.ahead {
			t.Fatalf("window %d (waited %v): reading ahead %v, want %v", i, c.waited, rr.aheadOn, c.ahead)
		}
	}
}

// TestNextRangeIsOpenedInTimeForSlowAnswers: a range's GET that took time to answer opens the
// next range as soon as the reader starts (its pace is not known yet), and, once the pace is
// known, as many bytes before the end as the reader reads in twice that time, when that is more
// than a quarter of the range.
func TestNextRangeIsOpenedInTimeForSlowAnswers(t *testing.T) {
	t.Run("at once", func(t *testing.T) {
		data := randomData(5 << 20)
		var now atomic.Int64
		g := gatedS3{rangeS3: &rangeS3{data: data, etag: "e1"}, asked: make(chan string, 64)}
		f := New(answersIn{g, &now, 20 * time.Millisecond})
		f.PartSize, f.PartsInFlight = 4<<20, 4
		f.ReadAhead = NewReadAhead(8 << 20)
		f.now = func() time.Time { return time.Unix(0, now.Load()) }
		obj, err := f.Open(context.Background(), Request{Bucket: "b", Key: "k", ETag: "e1", Size: int64(len(data))})
		if err != nil {
			t.Fatal(err)
		}
		defer obj.Body.Close()
		<-g.asked // the first range's
		if _, err := io.ReadFull(obj.Body, make([]byte, 32<<10)); err != nil {
			t.Fatal(err)
		}
		nextGET(t, g.asked, "bytes=1048576-3145727", "the first GET took 20 ms to answer, 32 KiB of 1 MiB read")
		got, err := io.ReadAll(obj.Body)
		if err != nil || !bytes.Equal(got, data[32<<10:]) {
			t.Fatalf("read %d bytes (%v), want the rest of the object", len(got), err)
		}
	})
	t.Run("lead", func(t *testing.T) {
		f := New(nil)
		now := time.Unix(100, 0)
		f.now = func() time.Time { return now }
		for _, c := range []struct {
			name   string
			answer time.Duration
			read   int64 // bytes read in the second of work since the first Read
			size   int64
			want   int64
		}{
			{"answers at once: a quarter", 0, 50 << 20, 8 << 20, 2 << 20},
			{"pace not known yet: now", 20 * time.Millisecond, 100 << 10, 8 << 20, math.MaxInt64},
			{"50 MB/s, 40 ms answers: 4 MB", 40 * time.Millisecond, 50e6, 8 << 20, 4e6},
			{"50 MB/s, 1 ms answers: a quarter", time.Millisecond, 50e6, 8 << 20, 2 << 20},
		} {
			rr := &rangedReader{f: f, answer: c.answer, last: 0, next: c.size, readBytes: c.read,
				firstRead: now.Add(-2 * time.Second), inRead: time.Second}
			if got := rr.lead(); got != c.want {
				t.Errorf("%s: lead %d, want %d", c.name, got, c.want)
			}
		}
	})
}

// answersIn is an S3 whose every GET takes d of a fake clock to answer.
type answersIn struct {
	API
	now *atomic.Int64
	d   time.Duration
}

func (a answersIn) GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	a.now.Add(int64(a.d))
	return a.API.GetObject(ctx, in, opts...)
}
