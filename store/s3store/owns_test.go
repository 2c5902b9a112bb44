package s3store

import "testing"

// TestOwnsWhatItWrites: the store owns every key under its prefix in its bucket (results,
// failure records, copies, the readiness object), and nothing else; with no prefix, its own
// directories and the results of objects of its own bucket.
func TestOwnsWhatItWrites(t *testing.T) {
	s, err := Open(nil, "s3://up/palleto")
	if err != nil {
		t.Fatal(err)
	}
	bare, err := Open(nil, "s3://up")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		s           *Store
		bucket, key string
		owns        bool
	}{
		{s, "up", s.objectKey("", "up", "in/a.gz", ".json"), true},
		{s, "up", s.failureKey("up", "in/a.gz", ""), true},
		{s, "up", s.failureKey("", "", "m1"), true},
		{s, "up", s.CopyKey("up", "in/a.gz"), true},
		{s, "up", "palleto/_palleto/ready.json", true},
		{s, "up", "in/a.gz", false},
		{s, "up", "palletox/a", false},
		{s, "other", "palleto/up/in/a.gz.json", false},
		{bare, "up", bare.objectKey("", "up", "in/a.gz", ".json"), true},
		{bare, "up", bare.failureKey("up", "in/a.gz", ""), true},
		{bare, "up", bare.CopyKey("up", "in/a.gz"), true},
		{bare, "up", "_palleto/ready.json", true},
		{bare, "up", "in/a.gz", false},
	} {
		if got := tt.s.Owns(tt.bucket, tt.key); got != tt.owns {
			t.Errorf("%s Owns(%s, %s) = %v, want %v", tt.s, tt.bucket, tt.key, got, tt.owns)
		}
	}
}
