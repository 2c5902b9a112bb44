package fetch

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Every answer of S3 is checked against what was asked before a byte of it is handed out: a
// range's start and end are the ones asked, its total is the object's size (the first answer's,
// and the event's when the event pins the version), the eTag and version are the pinned ones,
// and no body is longer than its answer said. Such checks are per answer, not per byte.

// ErrBadAnswer is wrapped by errors of an S3 answer that is not the one asked for: a range of
// other offsets, another total size, another eTag or version than pinned, a body longer than
// its range. It is retried as a broken body is (Fetcher.Resumes, after ResumeBackoff); once
// they are spent, the error also wraps ErrUnavailable: the server (or a proxy on the way) is
// wrong, not the object, and no result is made of it.
var ErrBadAnswer = errors.New("S3 answered other bytes than asked")

// ErrRangeRefused is wrapped by the error of a range S3 refused (HTTP 416, InvalidRange)
// although an earlier answer said the object holds it: S3's answer about this one object (it
// changed, or the server contradicts itself), not an outage of S3. It wraps neither
// ErrUnavailable nor ErrPermanent: the object's own failure, tried again later and counted by
// the poison guard.
var ErrRangeRefused = errors.New("S3 refused a range of the object (416)")

// expect is what an answer must say.
type expect struct {
	start, end int64  // the bytes asked: [start, end); end -1: to the object's end
	size       int64  // the object's size; -1: not known
	etag       string // quoted or not; "" not pinned
	version    string // "" not pinned; an answer that names no version is not refused
}

// check returns the object's size the answer says (-1: it does not say) and, when the answer
// is not the one asked for, an error wrapping ErrBadAnswer. An answer with no Content-Range
// carries the whole object (a GET of no range, or a server that ignored Range).
func (e expect) check(out *s3.GetObjectOutput) (size int64, err error) {
	bad := func(format string, a ...any) (int64, error) {
		return -1, fmt.Errorf("%w: "+format, append([]any{ErrBadAnswer}, a...)...)
	}
	if got, pinned := strings.Trim(aws.ToString(out.ETag), `"`), strings.Trim(e.etag, `"`); pinned != "" && !strings.EqualFold(got, pinned) {
		return bad("eTag %q, pinned to %q", got, pinned)
	}
	if got := aws.ToString(out.VersionId); e.version != "" && got != "" && got != e.version {
		return bad("version %q, pinned to %q", got, e.version)
	}
	length := int64(-1)
	if out.ContentLength != nil {
		length = *out.ContentLength
	}
	if out.ContentRange == nil {
		if e.size >= 0 && length >= 0 && length != e.size {
			return bad("the whole object in %d bytes, its size is %d", length, e.size)
		}
		return length, nil
	}
	start, last, total, ok := contentRange(*out.ContentRange)
	end := e.end
	if end < 0 || end > total {
		end = total // an open range, or one past the end of a smaller object (of unknown size)
	}
	switch {
	case !ok:
		return bad("Content-Range %q", *out.ContentRange)
	case e.size >= 0 && total != e.size:
		return bad("Content-Range %q for an object of %d bytes", *out.ContentRange, e.size)
	case start != e.start || last+1 != end:
		return bad("Content-Range %q for bytes %d-%d", *out.ContentRange, e.start, end-1)
	case length >= 0 && length != end-start:
		return bad("Content-Length %d for bytes %d-%d", length, start, last)
	}
	return total, nil
}

// contentRange parses "bytes START-END/TOTAL" into a range [start, last] of a valid size.
func contentRange(cr string) (start, last, total int64, ok bool) {
	rng, found := strings.CutPrefix(cr, "bytes ")
	rng, size, found2 := strings.Cut(rng, "/")
	a, b, found3 := strings.Cut(rng, "-")
	if !found || !found2 || !found3 {
		return 0, 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	total, err3 := strconv.ParseInt(size, 10, 64)
	return start, last, total, err1 == nil && err2 == nil && err3 == nil && 0 <= start && start <= last && last < total
}

// eventSize is the size an object's answers must say, from its event: the event's size when
// the event pins the version (an unpinned object may have changed since, legitimately), else
// -1.
func eventSize(r Request) int64 {
	if r.Size > 0 && (r.ETag != "" || r.VersionID != "") {
		return r.Size
	}
	return -1
}

// newObject is the object of a first answer, whose size check found. An answer that names no
// version leaves the event's: the resumes stay pinned to it.
func newObject(r Request, out *s3.GetObjectOutput, size int64) *Object {
	obj := &Object{Size: size, ETag: strings.Trim(aws.ToString(out.ETag), `"`), VersionID: aws.ToString(out.VersionId)}
	if obj.VersionID == "" {
		obj.VersionID = r.VersionID
	}
	return obj
}

// asked says what a GET asks for, for errors.
func asked(in *s3.GetObjectInput) string {
	if in.Range == nil {
		return "the whole object"
	}
	return *in.Range
}

// invalidRange says err is S3 refusing a range (HTTP 416, InvalidRange).
func invalidRange(err error) bool {
	var api interface{ ErrorCode() string }
	var re interface{ HTTPStatusCode() int }
	return errors.As(err, &api) && api.ErrorCode() == "InvalidRange" ||
		errors.As(err, &re) && re.HTTPStatusCode() == http.StatusRequestedRangeNotSatisfiable
}

// first makes an object's first GET and checks its answer; an answer that is not the one asked
// for is retried as a broken body is, and once the resumes are spent is the world's failure
// (ErrUnavailable and ErrBadAnswer). The errors of GetObject itself are returned as they are.
func (f *Fetcher) first(ctx context.Context, r Request, in *s3.GetObjectInput, e expect) (*s3.GetObjectOutput, *watchdog, context.CancelFunc, int64, error) {
	for tries := 0; ; tries++ {
		out, wd, cancel, err := f.get(ctx, in)
		if err != nil {
			return nil, nil, nil, 0, err
		}
		size, err := e.check(out)
		if err == nil {
			return out, wd, cancel, size, nil
		}
		wd.timer.Stop()
		out.Body.Close()
		cancel()
		err = fmt.Errorf("answer to %s: %w", asked(in), err)
		if tries >= f.Resumes {
			return nil, nil, nil, 0, fmt.Errorf("%w: %d retries spent: %w", ErrUnavailable, tries, err)
		}
		if f.OnResume != nil {
			f.OnResume(r.Bucket, r.Key, 0, err)
		}
		select {
		case <-ctx.Done():
			return nil, nil, nil, 0, ctx.Err()
		case <-time.After(f.ResumeBackoff << tries):
		}
	}
}
