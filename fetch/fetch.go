// Package fetch streams objects from S3: one GetObject per object, pinned to the version the
// notification named (versionId, or If-Match on its eTag), with the body handed to the caller as
// a stream, never held whole in memory. Its error table decides which S3 errors are permanent.
package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// ErrPermanent is wrapped by errors that retrying cannot fix: the object is gone, access is
// denied, or it was overwritten since the event.
var ErrPermanent = errors.New("permanent S3 error")

// API is the part of the S3 client Palleto calls. *s3.Client implements it.
type API interface {
	GetObject(context.Context, *s3.GetObjectInput, ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// Request names the object to fetch and the version the event saw.
type Request struct {
	Bucket, Key string
	VersionID   string // pin to this version when set
	ETag        string // else require this eTag (If-Match) when set
}

// Object is an open object. The caller must Close Body.
type Object struct {
	Body      io.ReadCloser
	Size      int64 // Content-Length, -1 when unknown
	ETag      string
	VersionID string
}

// Fetcher opens objects. Safe for concurrent use.
type Fetcher struct {
	api API
	// Resumes is how many times a broken body (connection reset, cut, short read) is resumed
	// with a Range request from the byte where it broke, pinned to the same eTag (default 5).
	Resumes int
	// ResumeBackoff is the wait before the first resume, doubled for each next one (default
	// 200ms).
	ResumeBackoff time.Duration
	// OnResume, when set, is told of each resume: the object, the offset and the cause.
	OnResume func(bucket, key string, offset int64, cause error)
}

// New returns a Fetcher using api.
func New(api API) *Fetcher {
	return &Fetcher{api: api, Resumes: 5, ResumeBackoff: 200 * time.Millisecond}
}

// Open starts a GetObject and returns the streaming body.
func (f *Fetcher) Open(ctx context.Context, r Request) (*Object, error) {
	in := &s3.GetObjectInput{Bucket: &r.Bucket, Key: &r.Key}
	pin(in, r.VersionID, r.ETag)
	out, err := f.api.GetObject(ctx, in)
	if err != nil {
		return nil, Classify(fmt.Errorf("s3 GetObject s3://%s/%s: %w", r.Bucket, r.Key, err))
	}
	size := int64(-1)
	if out.ContentLength != nil {
		size = *out.ContentLength
	}
	obj := &Object{Size: size, ETag: strings.Trim(aws.ToString(out.ETag), "\""), VersionID: aws.ToString(out.VersionId)}
	obj.Body = &resumingBody{ctx: ctx, f: f, req: r, obj: obj, body: out.Body}
	return obj, nil
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

// resumingBody reads an object's body and, when the connection breaks, continues it with a
// Range GET from the first byte not yet read, pinned to the version first read (its versionId,
// or If-Match its eTag), so the bytes handed out are exactly the object's.
type resumingBody struct {
	ctx     context.Context
	f       *Fetcher
	req     Request
	obj     *Object
	body    io.ReadCloser
	off     int64 // bytes handed out
	pending error // a break seen while returning data, dealt with on the next Read
	resumes int
}

func (b *resumingBody) Read(p []byte) (int, error) {
	for {
		if b.pending == nil {
			n, err := b.body.Read(p)
			b.off += int64(n)
			if err == io.EOF && b.obj.Size >= 0 && b.off < b.obj.Size {
				err = io.ErrUnexpectedEOF // the server or a proxy cut the body short
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

func (b *resumingBody) resume(cause error) error {
	where := fmt.Sprintf("s3://%s/%s", b.req.Bucket, b.req.Key)
	if b.ctx.Err() != nil {
		return b.ctx.Err()
	}
	if b.resumes >= b.f.Resumes {
		return fmt.Errorf("s3 GetObject %s: body broken at byte %d, %d resumes spent: %w", where, b.off, b.resumes, cause)
	}
	wait := b.f.ResumeBackoff << b.resumes
	b.resumes++
	if b.f.OnResume != nil {
		b.f.OnResume(b.req.Bucket, b.req.Key, b.off, cause)
	}
	b.body.Close()
	b.body = io.NopCloser(strings.NewReader("")) // until the new body is open
	select {
	case <-b.ctx.Done():
		return b.ctx.Err()
	case <-time.After(wait):
	}
	in := &s3.GetObjectInput{Bucket: &b.req.Bucket, Key: &b.req.Key, Range: aws.String(fmt.Sprintf("bytes=%d-", b.off))}
	pin(in, b.obj.VersionID, b.obj.ETag)
	out, err := b.f.api.GetObject(b.ctx, in)
	if err != nil {
		err = Classify(fmt.Errorf("s3 GetObject %s (resuming at byte %d after: %v): %w", where, b.off, cause, err))
		if !errors.Is(err, ErrPermanent) && b.ctx.Err() == nil {
			b.pending = err // the resume itself failed: try again, within the budget
			return nil
		}
		return err
	}
	b.body = out.Body
	if out.ContentRange == nil && b.off > 0 { // a server that ignored Range sent it all again
		if _, err := io.CopyN(io.Discard, out.Body, b.off); err != nil {
			b.pending = err
		}
	}
	return nil
}

func (b *resumingBody) Close() error { return b.body.Close() }

// permanentCodes are the S3 error codes that retrying cannot fix.
var permanentCodes = map[string]string{
	"NoSuchKey":               "the object no longer exists (deleted since the event)",
	"NoSuchBucket":            "the bucket does not exist",
	"NoSuchVersion":           "the version named by the event no longer exists",
	"AccessDenied":            "access denied",
	"PreconditionFailed":      "the object was overwritten since the event (its eTag changed)",
	"InvalidObjectState":      "the object is archived (restore it first)",
	"InvalidBucketName":       "invalid bucket name",
	"KeyTooLongError":         "key too long",
	"InvalidArgument":         "the request names something S3 cannot accept",
	"XMinioInvalidObjectName": "the key is not a valid object name for this server",
}

// retryableCodes are errors whose HTTP status (400 or 403) would read as permanent, but that a
// later attempt can get past: a slow upload, a clock or credentials being fixed or refreshed.
// Treating them as permanent would record and delete every message during a credentials outage.
var retryableCodes = map[string]bool{
	"RequestTimeout": true, "RequestTimeTooSkewed": true, "ExpiredToken": true, "TokenRefreshRequired": true,
	"InvalidAccessKeyId": true, "SignatureDoesNotMatch": true, "InvalidToken": true,
}

// Classify wraps err with ErrPermanent when retrying cannot help: its S3 error code is in
// permanentCodes or, for a code in neither table, its HTTP status is 400, 403, 404 or 412.
// Everything else (5xx, throttling, timeouts, resets, the codes of retryableCodes) is left
// retryable.
func Classify(err error) error {
	if err == nil || errors.Is(err, ErrPermanent) {
		return err
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		if retryableCodes[api.ErrorCode()] {
			return err
		}
		if why, ok := permanentCodes[api.ErrorCode()]; ok {
			return fmt.Errorf("%w: %s: %w", ErrPermanent, why, err)
		}
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusBadRequest, http.StatusNotFound, http.StatusForbidden, http.StatusPreconditionFailed:
			return fmt.Errorf("%w: HTTP %d: %w", ErrPermanent, re.HTTPStatusCode(), err)
		}
	}
	return err
}
