package webhook

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkThroughput: 8 senders POST events while 4 consumers receive them by tens and delete
// them, as the daemon's pollers do; one op is one event spooled, received and deleted.
func BenchmarkThroughput(b *testing.B) {
	s := newSource(b, func(c *Config) { c.WaitTime = 100 * time.Millisecond })
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	body := event("bench", "some/prefix/2026/12/01/object-000000.log.gz")
	var sent, got atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sent.Add(1) <= int64(b.N) {
				resp, err := client.Post(s.URL(), "application/json", strings.NewReader(body))
				if err != nil || resp.StatusCode != 200 {
					panic(fmt.Sprint(err, resp))
				}
				resp.Body.Close()
			}
		}()
	}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for got.Load() < int64(b.N) {
				msgs, err := s.Receive(context.Background(), 10)
				if err != nil {
					panic(err)
				}
				for _, m := range msgs {
					s.Delete(m)
				}
				got.Add(int64(len(msgs)))
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
