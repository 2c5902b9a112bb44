package faultproxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
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
