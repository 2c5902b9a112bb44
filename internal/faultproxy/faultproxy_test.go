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

// TestExchangeChangesAnswersOnAKeptAliveConnection: through one kept-alive connection, the
// first answer passes untouched, the second has its Content-Range and body changed, the third
// is replaced by another answer while the server's body is left unread by the test; the
// fourth, untouched again, is the server's own (the connection stayed in step).
func TestExchangeChangesAnswersOnAKeptAliveConnection(t *testing.T) {
	data := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "o", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	var mu sync.Mutex
	n := 0
	p, err := Start(Config{Target: strings.TrimPrefix(srv.URL, "http://"), Exchange: func(req *http.Request, resp *http.Response) *http.Response {
		mu.Lock()
		defer mu.Unlock()
		n++
		switch n {
		case 2: // the range asked, labelled and served 5 bytes earlier
			start, end, total, ok := ContentRange(resp)
			if !ok {
				t.Errorf("answer 2 has no Content-Range: %v", resp.Header)
				return resp
			}
			SetContentRange(resp, start-5, end-5, total)
			Body(resp, data[start-5:end-5+1])
		case 3:
			return Partial(req, []byte("new!"), 0, 4, "e2")
		}
		return resp
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	tr := &http.Transport{MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections() // before the proxy's Close, which waits for its connections
	c := &http.Client{Transport: tr}
	get := func(rng string) (string, string, string) {
		req, _ := http.NewRequest(http.MethodGet, p.URL(), nil)
		req.Header.Set("Range", rng)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), resp.Header.Get("Content-Range"), resp.Header.Get("ETag")
	}
	for i, want := range [][3]string{
		{"abcd", "bytes 10-13/36", ""},
		{"56789", "bytes 5-9/36", ""},
		{"new!", "bytes 0-3/4", `"e2"`},
		{"uvwxyz", "bytes 30-35/36", ""},
	} {
		rng := []string{"bytes=10-13", "bytes=10-14", "bytes=0-", "bytes=30-"}[i]
		body, cr, etag := get(rng)
		if body != want[0] || cr != want[1] || etag != want[2] {
			t.Errorf("answer %d to %s: %q %q %q, want %q", i+1, rng, body, cr, etag, want)
		}
	}
	if st := p.Stats(); st.Conns != 1 {
		t.Errorf("%d connections, want the 4 answers on one", st.Conns)
	}
}
