package s3store

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/store"
	"github.com/palleto/palleto/store/storetest"
)

// TestConformance runs the store conformance suite on MinIO, each subtest under a prefix of
// its own.
func TestConformance(t *testing.T) {
	env := testenv.Get(t)
	c := env.S3()
	bucket := testenv.Name("results")
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		url := "s3://" + bucket + "/" + testenv.Name("run") + "/out"
		return func() (store.Store, error) { return Open(c, url) }
	})
}

func TestParse(t *testing.T) {
	for _, tt := range []struct{ in, bucket, prefix string }{
		{"s3://b", "b", ""}, {"s3://b/", "b", ""}, {"s3://b/p", "b", "p/"}, {"s3://b/p/q/", "b", "p/q/"},
	} {
		b, p, err := Parse(tt.in)
		if err != nil || b != tt.bucket || p != tt.prefix {
			t.Errorf("Parse(%q) = %q, %q, %v", tt.in, b, p, err)
		}
	}
	for _, bad := range []string{"s3://", "b/p", "https://b/p"} {
		if _, _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}
