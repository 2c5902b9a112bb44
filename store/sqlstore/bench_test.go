package sqlstore

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/palleto/palleto/store"
)

// BenchmarkSQLiteLookup is the "already done?" query every object pays before its GET.
func BenchmarkSQLiteLookup(b *testing.B) {
	s, err := OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "r.db"), store.GroupConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var rs []store.Result
	for i := range 3000 {
		rs = append(rs, store.Result{Bucket: "b", Key: fmt.Sprintf("k/%05d", i), Processor: "lines", ETag: "e", StartedAt: time.Now(), FinishedAt: time.Now(), Fields: map[string]any{"lines": int64(i)}})
	}
	if err := s.WriteGroup(context.Background(), rs); err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := s.Result(context.Background(), "b", fmt.Sprintf("k/%05d", i%6000), "lines"); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
