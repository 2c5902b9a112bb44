package s3store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/store"
)

func TestObjectKeyTable(t *testing.T) {
	s, _ := Open(nil, "s3://results/pal")
	long := strings.Repeat("k", 1020)
	for _, tt := range []struct{ bucket, key, want string }{
		{"uploads", "data/percent%20literal.gz", "pal/uploads/data/percent%20literal.gz.json"},
		{"uploads", "a b+c%d", "pal/uploads/a b+c%d.json"},
		{"uploads", "été/日本/x.gz", "pal/uploads/été/日本/x.gz.json"},
		{"uploads", "dir/", "pal/uploads/dir/.json"},
		{"uploads", "_failed/x", "pal/uploads/_failed/x.json"},
		{"Legacy_Bucket", "k", "pal/Legacy_Bucket/k.json"},
		{"uploads", long, "pal/_hashed/uploads/" + sha(long) + ".json"},
		{"uploads", "a/../b", "pal/_hashed/uploads/" + sha("a/../b") + ".json"},
		{"uploads", "./a", "pal/_hashed/uploads/" + sha("./a") + ".json"},
		{"uploads", "/abs", "pal/_hashed/uploads/" + sha("/abs") + ".json"},
		{"uploads", "x//y", "pal/_hashed/uploads/" + sha("x//y") + ".json"},
		{"uploads", "nul\x00", "pal/_hashed/uploads/" + sha("nul\x00") + ".json"},
		{"uploads", "bad\xffutf8", "pal/_hashed/uploads/" + sha("bad\xffutf8") + ".json"},
		{"uploads", strings.Repeat("s", 251), "pal/_hashed/uploads/" + sha(strings.Repeat("s", 251)) + ".json"}, // 256 with ".json"
		{"_failed", "k", "pal/_hashed/_" + sha("_failed") + "/" + sha("k") + ".json"},
		{"a/b", "k", "pal/_hashed/_" + sha("a/b") + "/" + sha("k") + ".json"},
	} {
		if got := s.objectKey("", tt.bucket, tt.key, ".json"); got != tt.want {
			t.Errorf("objectKey(%q, %q) = %q, want %q", tt.bucket, tt.key, got, tt.want)
		}
	}
	if got := s.failureKey("uploads", "a b.gz", ""); got != "pal/_failed/uploads/a b.gz.json" {
		t.Errorf("failure key %q", got)
	}
	if got := s.CopyPath("uploads", "a b.gz"); got != "pal/_copy/uploads/a b.gz.data" {
		t.Errorf("copy key %q", got)
	}
	if got := s.failureKey("", "", "m/1"); got != "pal/_failed/_messages/m%2F1.json" {
		t.Errorf("message failure key %q", got)
	}
}

// TestResultsAreFoundByTheirKeyMinIO: on MinIO, the result of a key a user can name is at
// PREFIX/<bucket>/<key>.json as it is (a GET of that key finds it); the keys MinIO would refuse
// take the hashed form; every one is stored and found again by the store.
func TestResultsAreFoundByTheirKeyMinIO(t *testing.T) {
	env := testenv.Get(t)
	c := env.S3()
	bucket := testenv.Name("keys")
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	prefix := testenv.Name("p")
	s, err := Open(c, "s3://"+bucket+"/"+prefix)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, key := range []string{
		"data/percent%20literal.gz", "a b+c%d&e=f?g#h", "été/日本/x.gz", "dir/", "tab\there",
		"a/../b", "/abs", "x//y", "nul\x00key", strings.Repeat("k", 1020), strings.Repeat("s", 253) + "/t",
	} {
		now := time.Now().UTC()
		r := store.Result{Bucket: "uploads", Key: key, ETag: "e", Processor: "lines", StartedAt: now, FinishedAt: now,
			Fields: map[string]any{"lines": int64(3)}}
		var perr error
		where := s.Put(ctx, r, func(err error) { perr = err })
		if perr != nil {
			t.Errorf("Put %q: %v", key, perr)
			continue
		}
		if got, err := s.Result(ctx, "uploads", key, "lines"); err != nil || got == nil || got.Key != key {
			t.Errorf("Result %q: %+v, %v", key, got, err)
		}
		literal := prefix + "/uploads/" + key + ".json"
		hashed := s.objectKey("", "uploads", key, ".json") != literal
		if !hashed {
			if _, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &literal}); err != nil {
				t.Errorf("the result of %q is not at s3://%s/%s (%s): %v", key, bucket, literal, where, err)
			}
		}
		t.Logf("%.40q -> %.120s", key, where)
	}
}
