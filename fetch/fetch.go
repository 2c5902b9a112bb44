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
type Fetcher struct{ api API }

// New returns a Fetcher using api.
func New(api API) *Fetcher { return &Fetcher{api: api} }

// Open starts a GetObject and returns the streaming body.
func (f *Fetcher) Open(ctx context.Context, r Request) (*Object, error) {
	in := &s3.GetObjectInput{Bucket: &r.Bucket, Key: &r.Key}
	if r.VersionID != "" {
		in.VersionId = &r.VersionID
	} else if r.ETag != "" {
		etag := r.ETag
		if !strings.HasPrefix(etag, "\"") {
			etag = "\"" + etag + "\""
		}
		in.IfMatch = &etag
	}
	out, err := f.api.GetObject(ctx, in)
	if err != nil {
		return nil, Classify(fmt.Errorf("s3 GetObject s3://%s/%s: %w", r.Bucket, r.Key, err))
	}
	size := int64(-1)
	if out.ContentLength != nil {
		size = *out.ContentLength
	}
	return &Object{Body: out.Body, Size: size, ETag: strings.Trim(aws.ToString(out.ETag), "\""), VersionID: aws.ToString(out.VersionId)}, nil
}

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
