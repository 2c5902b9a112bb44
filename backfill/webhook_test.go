package backfill

import (
	"context"
	"github.com/palleto/palleto/queue"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestWebhookPublisher: every body is POSTed with the URL's token as a bearer token (and not in
// the URL); a 503 is tried again, a 400 is not.
func TestWebhookPublisher(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			return
		}
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer T0K" || r.URL.Query().Get("token") != "" || r.URL.Path != "/minio" {
			http.Error(w, "auth "+r.Header.Get("Authorization")+" "+r.URL.String(), 401)
			return
		}
		got[string(body)]++
		switch {
		case string(body) == "bad":
			http.Error(w, "no Records", 400)
		case string(body) == "busy" && got["busy"] < 3:
			w.Header().Set("Retry-After", "0")
			http.Error(w, "spool full", 503)
		}
	}))
	defer srv.Close()
	p, err := queue.OpenPublisher(context.Background(), srv.URL+"/minio?token=T0K", queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(context.Background(), []string{"a", "b", "busy"}); err != nil {
		t.Fatal(err)
	}
	if got["a"] != 1 || got["b"] != 1 || got["busy"] != 3 {
		t.Fatalf("POSTs: %v, want a and b once, busy 3 times (two 503s)", got)
	}
	err = p.Publish(context.Background(), []string{"bad"})
	if err == nil || !strings.Contains(err.Error(), "400") || got["bad"] != 1 {
		t.Fatalf("a refused body: %v after %d POSTs, want a 400 error after 1", err, got["bad"])
	}
	if _, err := queue.OpenPublisher(context.Background(), "ftp://x/y", queue.Options{}); err == nil || !strings.Contains(err.Error(), "http://") {
		t.Fatalf("an unknown scheme: %v", err)
	}
}

// TestWebhookPublisherCheck: a webhook that does not answer, or not at that path, fails Check.
func TestWebhookPublisherCheck(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	p, _ := queue.OpenPublisher(context.Background(), srv.URL+"/wrong", queue.Options{})
	if err := p.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("a 404: %v", err)
	}
	srv.Close()
	if err := p.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("nothing listening: %v", err)
	}
}
