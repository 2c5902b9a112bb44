package fetch

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

func codedRespErr(status int, code string) error {
	return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
		Err: &smithy.GenericAPIError{Code: code}}
}

func respErr(status int) error {
	return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: errors.New("x")}
}

func TestClassify(t *testing.T) {
	for _, tt := range []struct {
		name      string
		err       error
		permanent bool
	}{
		{"NoSuchKey", &smithy.GenericAPIError{Code: "NoSuchKey"}, true},
		{"AccessDenied", &smithy.GenericAPIError{Code: "AccessDenied"}, false},
		{"PreconditionFailed (overwritten since the event)", &smithy.GenericAPIError{Code: "PreconditionFailed"}, true},
		{"SlowDown", &smithy.GenericAPIError{Code: "SlowDown"}, false},
		{"InternalError", &smithy.GenericAPIError{Code: "InternalError"}, false},
		{"bare 404", respErr(404), true},
		{"bare 403", respErr(403), false},
		{"bare 503", respErr(503), false},
		{"bare 400 (MinIO's invalid object name)", respErr(400), true},
		{"RequestTimeout is a 400 but retryable", codedRespErr(400, "RequestTimeout"), false},
		{"expired credentials are a 400 but retryable", codedRespErr(400, "ExpiredToken"), false},
		{"a clock off by 15 minutes is a 403 but retryable", codedRespErr(403, "RequestTimeTooSkewed"), false},
		{"an unknown 403 code", codedRespErr(403, "SomethingNew"), false},
		{"NoSuchBucket", &smithy.GenericAPIError{Code: "NoSuchBucket"}, true},
		{"wrong region", codedRespErr(301, "PermanentRedirect"), false},
		{"connection reset", errors.New("read: connection reset by peer"), false},
	} {
		err := Classify(context.Background(), fmt.Errorf("s3 GetObject b/k: %w", tt.err))
		if errors.Is(err, ErrPermanent) != tt.permanent {
			t.Errorf("%s: permanent = %v, want %v (%v)", tt.name, !tt.permanent, tt.permanent, err)
		}
		if errors.Is(err, ErrUnavailable) == tt.permanent {
			t.Errorf("%s: a failure of the world = %v, want %v (%v)", tt.name, tt.permanent, !tt.permanent, err)
		}
		if !errors.Is(err, tt.err) {
			t.Errorf("%s: the cause is lost: %v", tt.name, err)
		}
	}
}

func TestCancelledIsNeitherClass(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Classify(ctx, fmt.Errorf("s3 GetObject b/k: %w", context.Canceled))
	if errors.Is(err, ErrPermanent) || errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("a shutdown became %v", err)
	}
}

// TestRangeRefusedIsNeitherClass: a 416 (InvalidRange) is S3's answer about one object: not an
// outage (which pauses every object), not the object's permanent fault; a probe that gets it
// (an empty object) finds S3 answering.
func TestRangeRefusedIsNeitherClass(t *testing.T) {
	for _, cause := range []error{codedRespErr(416, "InvalidRange"), respErr(416), &smithy.GenericAPIError{Code: "InvalidRange"}} {
		err := Classify(context.Background(), fmt.Errorf("s3 GetObject b/k: %w", cause))
		if !errors.Is(err, ErrRangeRefused) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrPermanent) || !errors.Is(err, cause) {
			t.Errorf("%v became %v, want ErrRangeRefused only", cause, err)
		}
	}
	if err := New(&rangeS3{data: nil, etag: "e"}).Probe(context.Background(), "b", "empty"); err != nil {
		t.Errorf("a probe answered 416: %v, want S3 seen answering", err)
	}
}
