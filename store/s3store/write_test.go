package s3store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/palleto/palleto/store"
)

// oldServer is an S3 server without conditional writes: it answers 501 NotImplemented to a
// PutObject with If-Match or If-None-Match, and stores the others.
type oldServer struct {
	API
	mu      sync.Mutex
	objects map[string][]byte
	refused int
}

func apiErr(status int, code string) error {
	return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
		Err: &smithy.GenericAPIError{Code: code}}
}

func (o *oldServer) GetObject(_ context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	data, ok := o.objects[*in.Key]
	if !ok {
		return nil, apiErr(404, "NoSuchKey")
	}
	return &s3.GetObjectOutput{Body: io.NopCloser(bytes.NewReader(data)), ETag: aws.String(`"e"`)}, nil
}

func (o *oldServer) PutObject(_ context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if in.IfMatch != nil || in.IfNoneMatch != nil {
		o.refused++
		return nil, apiErr(501, "NotImplemented")
	}
	data, _ := io.ReadAll(in.Body)
	o.objects[*in.Key] = data
	return &s3.PutObjectOutput{}, nil
}

func (o *oldServer) DeleteObject(context.Context, *s3.DeleteObjectInput, ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	return &s3.DeleteObjectOutput{}, nil
}

// TestServerWithoutConditionalWrites: on a server that does not implement conditional writes,
// results are still stored (written without the condition from then on), and the log says
// once that replicas are no longer ordered.
func TestServerWithoutConditionalWrites(t *testing.T) {
	srv := &oldServer{objects: map[string][]byte{}}
	s, err := Open(srv, "s3://results/p")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s.log = slog.New(slog.NewTextHandler(&logs, nil))
	for _, seq := range []string{"01", "02", "03"} {
		var got error
		s.Put(context.Background(), store.Result{Bucket: "b", Key: "k", Sequencer: seq, Processor: "lines"}, func(err error) { got = err })
		if got != nil {
			t.Fatalf("Put %s: %v", seq, got)
		}
	}
	r, err := s.Result(context.Background(), "b", "k", "lines")
	if err != nil || r == nil || r.Sequencer != "03" {
		t.Fatalf("stored: %+v, %v; want the last event's", r, err)
	}
	if srv.refused != 1 || strings.Count(logs.String(), "refuses conditional writes") != 1 {
		t.Fatalf("%d conditional writes refused, log %q; want one, said once", srv.refused, logs.String())
	}
}

// TestPutErrorClasses: whose fault a PutObject's error is.
func TestPutErrorClasses(t *testing.T) {
	for _, tt := range []struct {
		err         error
		conditional bool
		want        error
	}{
		{apiErr(412, "PreconditionFailed"), true, errLostRace},
		{apiErr(409, "ConditionalRequestConflict"), true, errLostRace},
		{apiErr(501, "NotImplemented"), true, errNoConditional},
		{apiErr(501, "NotImplemented"), false, store.ErrUnavailable},
		{apiErr(412, "PreconditionFailed"), false, store.ErrUnavailable},
		{apiErr(400, "KeyTooLongError"), false, store.ErrBadData},
		{apiErr(400, "XMinioInvalidObjectName"), true, store.ErrBadData},
		{apiErr(503, "SlowDown"), true, store.ErrUnavailable},
		{apiErr(403, "AccessDenied"), false, store.ErrUnavailable},
		{errors.New("connection reset"), true, store.ErrUnavailable},
	} {
		if got := putErr("b", "k", tt.conditional, tt.err); !errors.Is(got, tt.want) {
			t.Errorf("putErr(%v, conditional %v) = %v, want %v", tt.err, tt.conditional, got, tt.want)
		}
	}
}
