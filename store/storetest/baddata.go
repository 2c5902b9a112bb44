package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/palleto/palleto/store"
)

// testBadData: a result the store cannot hold for its content (a field JSON cannot encode; a
// NUL byte in the key or in a field, which PostgreSQL refuses) fails alone, as the object's own
// failure (store.ErrBadData, never store.ErrUnavailable), while the healthy results put with it
// are stored; a store that can hold it stores it exactly. Either way its lookup answers, its
// failure record can be written and found, and the store takes the next result.
func testBadData(t *testing.T, fresh func(t *testing.T) Opener) {
	for _, tc := range []struct {
		name     string
		key      string
		fields   map[string]any
		mustFail bool
	}{
		{"NaNField", "nan.gz", map[string]any{"lines": int64(1), "ratio": math.NaN()}, true},
		{"InfField", "inf.gz", map[string]any{"mean": math.Inf(1)}, true},
		{"NULInKey", "dir/nul\x00key.gz", map[string]any{"lines": int64(1)}, false},
		{"NULInField", "nulfield.gz", map[string]any{"lines": int64(1), "match": "a\x00b"}, false},
		{"NULInFieldName", "nulname.gz", map[string]any{"lines": int64(1), "k\x00": "v"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, fresh(t))
			bad := result("bkt", tc.key, 1)
			bad.Fields = tc.fields
			// The bad result among healthy ones, put at once: a grouped store commits them together.
			const healthy = 6
			errs := make([]error, healthy+1)
			var wg sync.WaitGroup
			for i := range healthy + 1 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := bad
					if i < healthy {
						r = result("bkt", fmt.Sprintf("ok/%s/%d", tc.name, i), i)
					}
					errs[i] = putErr(s, r)
				}()
			}
			wg.Wait()
			for i := range healthy {
				if errs[i] != nil {
					t.Fatalf("a healthy result put beside a bad one: %v", errs[i])
				}
				if got := find(t, s, "bkt", fmt.Sprintf("ok/%s/%d", tc.name, i), "lines"); lines(got) != fmt.Sprint(i) {
					t.Fatalf("a healthy result put beside a bad one is not stored: %+v", got)
				}
			}
			err := errs[healthy]
			switch {
			case err == nil && tc.mustFail:
				t.Fatalf("a result with fields %v was taken; JSON cannot hold them", tc.fields)
			case err != nil && (!errors.Is(err, store.ErrBadData) || errors.Is(err, store.ErrUnavailable)):
				t.Fatalf("the bad result's done: %v; want store.ErrBadData (the object's own failure), not the store's", err)
			}
			if err != nil {
				t.Logf("refused: %v", err)
			} else {
				t.Log("stored")
			}
			got, lerr := s.Result(context.Background(), "bkt", tc.key, "lines")
			if lerr != nil {
				t.Fatalf("lookup of %q: %v; a key is never the store's failure", tc.key, lerr)
			}
			if err == nil && (got == nil || got.Key != tc.key || !reflect.DeepEqual(normal(got.Fields), normal(tc.fields))) {
				t.Fatalf("the result of %q was taken, but found as %+v, want key %q fields %v", tc.key, got, tc.key, tc.fields)
			}
			if err != nil && got != nil {
				t.Fatalf("the result of %q failed (%v) but is found: %+v", tc.key, err, got)
			}
			// The object's failure record, as the daemon writes it next.
			ctx := context.Background()
			f := store.Failure{Bucket: "bkt", Key: tc.key, ETag: bad.ETag, MessageID: "m-bad", Class: "permanent",
				Error: fmt.Sprintf("result of s3://bkt/%s: %v", tc.key, err), Attempts: 1, Action: "deleted", At: time.Now().UTC()}
			if _, err := s.PutFailure(ctx, f); err != nil {
				t.Fatalf("the failure record of %q: %v", tc.key, err)
			}
			if rec, err := s.Failure(ctx, "bkt", tc.key, ""); err != nil || rec == nil || rec.Class != "permanent" || rec.MessageID != "m-bad" {
				t.Fatalf("the failure record of %q: %+v, %v", tc.key, rec, err)
			}
			put(t, s, result("bkt", "after/"+tc.name, 5)) // the store is not stuck behind it
			if got := find(t, s, "bkt", "after/"+tc.name, "lines"); lines(got) != "5" {
				t.Fatalf("a result put after the bad one: %+v", got)
			}
		})
	}
}

// normal is fields as JSON gives them back: numbers as float64 or int64 compare equal.
func normal(fields map[string]any) map[string]string {
	out := map[string]string{}
	for k, v := range fields {
		out[k] = fmt.Sprint(v)
	}
	return out
}
