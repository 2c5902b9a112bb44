package faultproxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCutAtCutsWhateverTheInterleaving: four clients read 1 MiB each at once through the proxy;
// each CutAt mark cuts exactly one of them (the second mark, 1.5 MiB, is reached whichever
// connection the first cut), and the others get their whole body.
func TestCutAtCutsWhateverTheInterleaving(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 1<<20)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer srv.Close()
	p, err := Start(Config{Target: strings.TrimPrefix(srv.URL, "http://"), CutAt: []int64{100, 3 << 19}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	whole, short := 0, 0
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			n := int64(0)
			if resp, err := c.Get(p.URL()); err == nil {
				n, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			mu.Lock()
			defer mu.Unlock()
			if n == int64(len(body)) {
				whole++
			} else {
				short++
			}
		}()
	}
	wg.Wait()
	if got := p.Stats().Cuts; got != 2 || short != 2 || whole != 2 {
		t.Errorf("cuts %d, short bodies %d, whole %d; want 2, 2, 2", got, short, whole)
	}
}

// TestBandwidthIsPacedPerResponse: a connection kept alive and reused after sitting idle sends
// its next answer at the bandwidth too, as a new S3 GET would, not at full speed until its
// bytes catch up with the idle time. (Only lower bounds on durations: a slow machine cannot
// make it fail.)
func TestBandwidthIsPacedPerResponse(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 256<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer srv.Close()
	p, err := Start(Config{Target: strings.TrimPrefix(srv.URL, "http://"), Bandwidth: 2 << 20}) // 256 KiB in 125 ms
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer c.CloseIdleConnections() // before Close, which waits for the connections to end
	get := func() time.Duration {
		t.Helper()
		start := time.Now()
		resp, err := c.Get(p.URL())
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if n != int64(len(body)) {
			t.Fatalf("%d bytes, want %d", n, len(body))
		}
		return time.Since(start)
	}
	if d := get(); d < 100*time.Millisecond {
		t.Fatalf("first answer in %v, want 125 ms at the bandwidth", d)
	}
	time.Sleep(400 * time.Millisecond) // idle: 800 KiB of unused bandwidth, were it banked
	if d := get(); d < 100*time.Millisecond {
		t.Errorf("answer on the connection reused after 400 ms idle came in %v, want 125 ms at the bandwidth", d)
	}
	if s := p.Stats(); s.Conns != 1 {
		t.Errorf("%d connections, want the one kept alive", s.Conns)
	}
}
