package sqlstore

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/palleto/palleto/internal/testenv"
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

// BenchmarkSQLiteWriteGroup commits groups of 95 new results (what P2's commits hold), one
// transaction each, fsync included: the CPU per result a grouped commit costs.
func BenchmarkSQLiteWriteGroup(b *testing.B) {
	s, err := OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "r.db"), store.GroupConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const group = 95
	n := 0
	b.ReportAllocs()
	cpu0 := testenv.ProcessCPU()
	for b.Loop() {
		rs := make([]store.Result, group)
		for i := range rs {
			n++
			now := time.Now()
			rs[i] = store.Result{Bucket: "bench-small", Key: fmt.Sprintf("small/%07d.log.gz", n), Processor: "lines", ETag: "0123456789abcdef0123456789abcdef",
				Sequencer: "0055AA0011223344", Size: 1025, Bytes: 5100, Encoding: "gzip", MessageID: "2b1c7e2a-8a55-4b0e-9d2c-6d3c1f1f0e11", ReceiveCount: 1,
				StartedAt: now, FinishedAt: now, Fields: map[string]any{"lines": int64(28)}}
		}
		if _, err := s.WriteGroupReport(context.Background(), rs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*group), "ns/result")
	b.ReportMetric(float64((testenv.ProcessCPU()-cpu0).Nanoseconds())/float64(b.N*group), "cpu-ns/result")
}
