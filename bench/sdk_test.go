package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyendpoints "github.com/aws/smithy-go/endpoints"

	"github.com/palleto/palleto"
	"github.com/palleto/palleto/internal/testenv"
)

// cachedEndpoints resolves each distinct set of endpoint parameters once (the S3 endpoint rules
// are evaluated on every call otherwise).
type cachedEndpoints struct {
	next  s3.EndpointResolverV2
	cache map[string]smithyendpoints.Endpoint
}

func (c *cachedEndpoints) ResolveEndpoint(ctx context.Context, p s3.EndpointParameters) (smithyendpoints.Endpoint, error) {
	k := aws.ToString(p.Bucket) + "\x00" + aws.ToString(p.Region) + "\x00" + aws.ToString(p.Endpoint)
	if e, ok := c.cache[k]; ok {
		return e, nil
	}
	e, err := c.next.ResolveEndpoint(ctx, p)
	if err == nil {
		c.cache[k] = e
	}
	return e, err
}

// BenchmarkGetObjectSDK is one small GetObject (1 KiB, body read) against a local server, with
// the S3 client as palleto.AWSClients builds it and with the alternatives the SDK offers: what
// each costs per call, for P2's "SDK per call" question (docs/PERFORMANCE.md).
func BenchmarkGetObjectSDK(b *testing.B) {
	body := strings.Repeat("x", 1025)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"0123456789abcdef0123456789abcdef"`)
		w.Header().Set("Content-Length", "1025")
		w.Header().Set("Last-Modified", "Mon, 01 Dec 2026 10:00:00 GMT")
		io.WriteString(w, body)
	}))
	defer srv.Close()
	b.Setenv("AWS_REGION", "us-east-1")
	b.Setenv("AWS_ACCESS_KEY_ID", "bench")
	b.Setenv("AWS_SECRET_ACCESS_KEY", "benchbenchbench")
	b.Setenv("AWS_ENDPOINT_URL_S3", srv.URL)
	b.Setenv("AWS_ENDPOINT_URL", "")
	_, base, err := palleto.AWSClients(context.Background(), 8)
	if err != nil {
		b.Fatal(err)
	}
	for _, v := range []struct {
		name string
		opt  func(*s3.Options)
	}{
		{"asBuilt", func(*s3.Options) {}},
		{"responseChecksumWhenRequired", func(o *s3.Options) { o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired }},
		{"cachedEndpoints", func(o *s3.Options) {
			o.EndpointResolverV2 = &cachedEndpoints{next: s3.NewDefaultEndpointResolverV2(), cache: map[string]smithyendpoints.Endpoint{}}
		}},
		{"noRetryer", func(o *s3.Options) { o.Retryer = aws.NopRetryer{} }},
		{"anonymous(no signing)", func(o *s3.Options) { o.Credentials = aws.AnonymousCredentials{} }},
		{"all", func(o *s3.Options) {
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
			o.EndpointResolverV2 = &cachedEndpoints{next: s3.NewDefaultEndpointResolverV2(), cache: map[string]smithyendpoints.Endpoint{}}
		}},
	} {
		b.Run(v.name, func(b *testing.B) {
			c := s3.New(base.Options(), v.opt)
			in := &s3.GetObjectInput{Bucket: aws.String("bench-small"), Key: aws.String("small/00001.log.gz")}
			b.ReportAllocs()
			cpu0 := testenv.ProcessCPU()
			defer func() { b.ReportMetric(float64((testenv.ProcessCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op") }()
			for b.Loop() {
				out, err := c.GetObject(context.Background(), in)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, out.Body)
				out.Body.Close()
			}
		})
	}
}
