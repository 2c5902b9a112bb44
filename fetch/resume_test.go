package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// flakyS3 serves one object, honouring Range and If-Match; the n-th response body (counting
// from 0) breaks after breaks[n] bytes with errs[n] (io.EOF: the body is cut short).
type flakyS3 struct {
	API
	mu       sync.Mutex
	data     []byte
	etag     string
	breaks   []int
	errs     []error
	requests []*s3.GetObjectInput
}

func (f *flakyS3) GetObject(ctx context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.requests)
	f.requests = append(f.requests, in)
	if in.IfMatch != nil && *in.IfMatch != `"`+f.etag+`"` {
		return nil, &smithy.GenericAPIError{Code: "PreconditionFailed"}
	}
	start := 0
	out := &s3.GetObjectOutput{ETag: aws.String(`"` + f.etag + `"`)}
	if in.Range != nil {
		fmt.Sscanf(*in.Range, "bytes=%d-", &start)
		out.ContentRange = aws.String(fmt.Sprintf("bytes %d-%d/%d", start, len(f.data)-1, len(f.data)))
	}
	rest := f.data[start:]
	out.ContentLength = aws.Int64(int64(len(rest)))
	var body io.Reader = bytes.NewReader(rest)
	if n < len(f.breaks) && f.breaks[n] < len(rest) {
		body = io.MultiReader(bytes.NewReader(rest[:f.breaks[n]]), errReader{f.errs[n]})
	}
	out.Body = io.NopCloser(body)
	return out, nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestBrokenBodyResumesWithRange(t *testing.T) {
	data := []byte(strings.Repeat("0123456789abcdef", 10000))
	api := &flakyS3{data: data, etag: "e1", breaks: []int{1000, 5000}, errs: []error{syscall.ECONNRESET, io.EOF}}
	f := New(api)
	f.ResumeBackoff = time.Millisecond
	var resumedAt []int64
	f.OnResume = func(_, _ string, off int64, _ error) { resumedAt = append(resumedAt, off) }
	obj, err := f.Open(context.Background(), Request{Bucket: "b", Key: "k", ETag: "e1"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj.Body)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes (%v), want the %d bytes of the object", len(got), err, len(data))
	}
	if fmt.Sprint(resumedAt) != "[1000 6000]" {
		t.Errorf("resumed at %v, want [1000 6000]", resumedAt)
	}
	for i, want := range []string{"", "bytes=1000-", "bytes=6000-"} {
		if r := aws.ToString(api.requests[i].Range); r != want || aws.ToString(api.requests[i].IfMatch) != `"e1"` {
			t.Errorf("request %d: Range %q If-Match %q, want %q and the first eTag", i, r, aws.ToString(api.requests[i].IfMatch), want)
		}
	}
}

func TestResumeOfAnOverwrittenObjectIsPermanent(t *testing.T) {
	api := &flakyS3{data: bytes.Repeat([]byte("x"), 10000), etag: "e1", breaks: []int{100}, errs: []error{syscall.ECONNRESET}}
	f := New(api)
	f.ResumeBackoff = time.Millisecond
	obj, err := f.Open(context.Background(), Request{Bucket: "b", Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	api.mu.Lock()
	api.etag = "e2" // overwritten while we read
	api.mu.Unlock()
	_, err = io.ReadAll(obj.Body)
	if !errors.Is(err, ErrPermanent) || !strings.Contains(err.Error(), "overwritten") {
		t.Fatalf("err = %v, want a permanent 'overwritten' error", err)
	}
}

func TestResumeBudgetSpentIsRetryable(t *testing.T) {
	breaks := []int{10, 10, 10, 10, 10, 10, 10}
	errs := []error{syscall.ECONNRESET, syscall.ECONNRESET, syscall.ECONNRESET, syscall.ECONNRESET, syscall.ECONNRESET, syscall.ECONNRESET, syscall.ECONNRESET}
	api := &flakyS3{data: bytes.Repeat([]byte("y"), 1000), etag: "e", breaks: breaks, errs: errs}
	f := New(api)
	f.Resumes, f.ResumeBackoff = 3, time.Millisecond
	obj, _ := f.Open(context.Background(), Request{Bucket: "b", Key: "k"})
	_, err := io.ReadAll(obj.Body)
	if err == nil || errors.Is(err, ErrPermanent) || !errors.Is(err, syscall.ECONNRESET) || len(api.requests) != 4 {
		t.Fatalf("err = %v after %d requests; want the retryable cause after 1+3", err, len(api.requests))
	}
}

// stallingS3 serves one object; the first body sends stallAfter bytes and then nothing, until
// the request's context is cancelled (a peer that stopped sending, the connection still open).
// With noAnswer, GetObject itself waits for the context.
type stallingS3 struct {
	API
	mu         sync.Mutex
	data       []byte
	stallAfter int
	noAnswer   bool
	requests   []string
}

func (s *stallingS3) GetObject(ctx context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	s.mu.Lock()
	n := len(s.requests)
	s.requests = append(s.requests, aws.ToString(in.Range))
	s.mu.Unlock()
	if s.noAnswer {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	start := 0
	out := &s3.GetObjectOutput{ETag: aws.String(`"e"`)}
	if in.Range != nil {
		fmt.Sscanf(*in.Range, "bytes=%d-", &start)
		out.ContentRange = aws.String(fmt.Sprintf("bytes %d-%d/%d", start, len(s.data)-1, len(s.data)))
	}
	rest := s.data[start:]
	out.ContentLength = aws.Int64(int64(len(rest)))
	var body io.Reader = bytes.NewReader(rest)
	if n == 0 && s.stallAfter >= 0 {
		body = io.MultiReader(bytes.NewReader(rest[:s.stallAfter]), ctxReader{ctx})
	}
	out.Body = io.NopCloser(checked{body, ctx})
	return out, nil
}

// checked fails reads once ctx is done, as a body of the SDK does when its request is cancelled.
type checked struct {
	r   io.Reader
	ctx context.Context
}

func (c checked) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// ctxReader blocks until ctx is done, as a read from a silent connection does.
type ctxReader struct{ ctx context.Context }

func (c ctxReader) Read([]byte) (int, error) { <-c.ctx.Done(); return 0, c.ctx.Err() }

func TestStalledBodyIsAbandonedAndResumed(t *testing.T) {
	data := bytes.Repeat([]byte("z"), 5000)
	api := &stallingS3{data: data, stallAfter: 1000}
	f := New(api)
	f.ResumeBackoff, f.ReadTimeout = time.Millisecond, 50*time.Millisecond
	var causes []error
	f.OnResume = func(_, _ string, _ int64, cause error) { causes = append(causes, cause) }
	obj, err := f.Open(context.Background(), Request{Bucket: "b", Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj.Body)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes (%v), want the whole object after a resume", len(got), err)
	}
	if len(causes) != 1 || !errors.Is(causes[0], ErrStalled) || fmt.Sprint(api.requests) != "[ bytes=1000-]" {
		t.Fatalf("resumes %v, requests %v: want one resume at byte 1000 for a stall", causes, api.requests)
	}
}

func TestNoAnswerIsAFailureOfTheWorld(t *testing.T) {
	f := New(&stallingS3{noAnswer: true})
	f.FirstByteTimeout = 50 * time.Millisecond
	_, err := f.Open(context.Background(), Request{Bucket: "b", Key: "k"})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrStalled) {
		t.Fatalf("a GET that never answers: %v, want ErrUnavailable and ErrStalled", err)
	}
}

// TestSlowReaderIsNotAStall: the read deadline is S3's, not the processor's: a consumer that
// takes longer than it between reads causes no resume.
func TestSlowReaderIsNotAStall(t *testing.T) {
	data := bytes.Repeat([]byte("s"), 5000)
	api := &stallingS3{data: data, stallAfter: -1}
	f := New(api)
	f.ReadTimeout = 20 * time.Millisecond
	obj, err := f.Open(context.Background(), Request{Bucket: "b", Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	var got []byte
	for {
		n, err := obj.Body.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
		time.Sleep(60 * time.Millisecond) // the processor at work: longer than the read deadline
	}
	if !bytes.Equal(got, data) || len(api.requests) != 1 {
		t.Fatalf("read %d bytes in %d requests; want all in one", len(got), len(api.requests))
	}
}
