package dir

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkWriteResult8 writes small results from 8 goroutines, as 8 workers do.
func BenchmarkWriteResult8(b *testing.B) {
	d, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	var n atomic.Int64
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			r := Result{Bucket: "bench", Key: fmt.Sprintf("small/%05d.log.gz", i), ETag: "e", Processor: "lines",
				StartedAt: time.Now(), FinishedAt: time.Now(), Fields: map[string]any{"lines": 3}}
			if _, err := d.WriteResult(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
