package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/palleto/palleto/queue"
	"github.com/palleto/palleto/queue/queuetest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newSource starts a webhook on a free loopback port with a fresh spool.
func newSource(t testing.TB, mods ...func(*Config)) *Source {
	t.Helper()
	cfg := Config{Addr: "127.0.0.1:0", Path: "/events", Spool: filepath.Join(t.TempDir(), "spool.db"),
		AckTimeout: time.Minute, WaitTime: time.Second, Logger: quiet}
	for _, m := range mods {
		m(&cfg)
	}
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// event is a MinIO-like notification of one object created under key (URL-encoded as S3 does).
func event(bucket, key string) string {
	b, _ := json.Marshal(map[string]any{"EventName": "s3:ObjectCreated:Put", "Key": bucket + "/" + key, "Records": []any{map[string]any{
		"eventVersion": "2.0", "eventSource": "minio:s3", "eventName": "s3:ObjectCreated:Put", "eventTime": "2026-12-01T10:00:00.000Z",
		"s3": map[string]any{"bucket": map[string]any{"name": bucket}, "object": map[string]any{"key": url.QueryEscape(key), "size": 4, "eTag": "abc"}},
	}}})
	return string(b)
}

// keyOf returns the (still encoded) key of an event's first record.
func keyOf(t testing.TB, body []byte) string {
	var ev struct {
		Records []struct {
			S3 struct {
				Object struct {
					Key string `json:"key"`
				} `json:"object"`
			} `json:"s3"`
		}
	}
	if err := json.Unmarshal(body, &ev); err != nil || len(ev.Records) == 0 {
		t.Fatalf("not an event: %q (%v)", body, err)
	}
	return ev.Records[0].S3.Object.Key
}

// post POSTs body to u with the headers and returns the status and the answer's text.
func post(t testing.TB, u, body string, header ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(text)
}

// marked is the webhook with each received body replaced by its event's key: the conformance
// suite sends bare strings, which the webhook refuses (400), so Send wraps each in an event.
type marked struct{ *Source }

func (m marked) Receive(ctx context.Context, n int) ([]*queue.Message, error) {
	msgs, err := m.Source.Receive(ctx, n)
	for _, msg := range msgs {
		var ev struct {
			Records []struct {
				S3 struct {
					Object struct {
						Key string `json:"key"`
					} `json:"object"`
				} `json:"s3"`
			}
		}
		if json.Unmarshal(msg.Body, &ev) == nil && len(ev.Records) > 0 {
			msg.Body = []byte(ev.Records[0].S3.Object.Key)
		}
	}
	return msgs, err
}

func TestConformance(t *testing.T) {
	queuetest.Run(t, func(t *testing.T) queuetest.Env {
		s := newSource(t)
		return queuetest.Env{Source: marked{s}, DLQ: true, Send: func(body string) {
			if code, _, text := post(t, s.URL(), event("b", body)); code != http.StatusOK {
				t.Fatalf("POST %q: %d %s", body, code, text)
			}
		}}
	})
}

// TestAnswers: each kind of request gets its answer, and only a good event is spooled.
func TestAnswers(t *testing.T) {
	big := event("b", strings.Repeat("k", MaxBody))
	cases := []struct {
		name, method, path, body string
		header                   []string
		want                     int
		spooled                  int64
		says                     string
	}{
		{"event", "POST", "/events", event("b", "a.log"), nil, 200, 1, `"spooled":true`},
		{"two records", "POST", "/events", `{"Records":[{"s3":{}},{"s3":{}}]}`, nil, 200, 1, `"spooled":true`},
		{"test event", "POST", "/events", `{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}`, nil, 200, 0, "TestEvent"},
		{"not JSON", "POST", "/events", `Records: yes`, nil, 400, 0, "not a JSON object"},
		{"broken JSON", "POST", "/events", `{"Records":[`, nil, 400, 0, "not JSON"},
		{"JSON array", "POST", "/events", `[{"Records":[]}]`, nil, 400, 0, "not a JSON object"},
		{"no Records", "POST", "/events", `{"EventName":"s3:ObjectCreated:Put"}`, nil, 400, 0, "no Records"},
		{"null Records", "POST", "/events", `{"Records":null}`, nil, 400, 0, "no Records"},
		{"empty Records", "POST", "/events", `{"Records":[]}`, nil, 400, 0, "Records is empty"},
		{"Records not an array", "POST", "/events", `{"Records":{"s3":{}}}`, nil, 400, 0, "not an array"},
		{"empty body", "POST", "/events", ``, nil, 400, 0, "not a JSON object"},
		{"over 1 MiB", "POST", "/events", big, nil, 413, 0, "over the limit"},
		{"probe", "GET", "/events", ``, nil, 200, 0, "POST S3 event notifications here"},
		{"other method", "PUT", "/events", event("b", "a.log"), nil, 405, 0, "not allowed"},
		{"other path", "POST", "/other", event("b", "a.log"), nil, 404, 0, "no such path"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSource(t)
			req, _ := http.NewRequest(c.method, "http://"+s.Addr()+c.path, strings.NewReader(c.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			text, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.want || !strings.Contains(string(text), c.says) {
				t.Errorf("%s %s: %d %q, want %d saying %q", c.method, c.path, resp.StatusCode, text, c.want, c.says)
			}
			if n := s.Spooled(); n != c.spooled {
				t.Errorf("%d messages spooled, want %d", n, c.spooled)
			}
		})
	}
}

// TestOverOneMiBChunked: a body over the limit sent without a Content-Length is refused too.
func TestOverOneMiBChunked(t *testing.T) {
	s := newSource(t)
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte(event("b", strings.Repeat("k", MaxBody))))
		pw.Close()
	}()
	resp, err := http.Post(s.URL(), "application/json", pr) // a pipe: sent chunked
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || s.Spooled() != 0 {
		t.Errorf("a chunked body over 1 MiB: %d, %d spooled; want 413, none", resp.StatusCode, s.Spooled())
	}
}

// TestToken: with a token, a POST needs it as a bearer token, a Basic password or ?token=.
func TestToken(t *testing.T) {
	s := newSource(t, func(c *Config) { c.Token = "s3cret" })
	cases := []struct {
		name   string
		url    string
		header []string
		want   int
	}{
		{"none", s.URL(), nil, 401},
		{"wrong bearer", s.URL(), []string{"Authorization", "Bearer s3cre"}, 401},
		{"longer bearer", s.URL(), []string{"Authorization", "Bearer s3cret2"}, 401},
		{"not bearer", s.URL(), []string{"Authorization", "s3cret"}, 401},
		{"wrong query", s.URL() + "?token=nope", nil, 401},
		{"bearer", s.URL(), []string{"Authorization", "Bearer s3cret"}, 200},
		{"bearer lower case", s.URL(), []string{"Authorization", "bearer s3cret"}, 200},
		{"query", s.URL() + "?token=s3cret", nil, 200},
		{"basic password", strings.Replace(s.URL(), "http://", "http://ceph:s3cret@", 1), nil, 200},
	}
	var want int64
	for _, c := range cases {
		code, h, text := post(t, c.url, event("b", c.name), c.header...)
		if code != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, code, text, c.want)
		}
		if code == 401 && !strings.Contains(h.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: a 401 without WWW-Authenticate: Bearer", c.name)
		}
		if c.want == 200 {
			want++
		}
	}
	if n := s.Spooled(); n != want {
		t.Errorf("%d spooled, want %d (only the authorized ones)", n, want)
	}
}

// TestSpoolLimit: past --spool-max-messages a POST is answered 503 with Retry-After and not
// spooled; once a message is deleted there is room again.
func TestSpoolLimit(t *testing.T) {
	s := newSource(t, func(c *Config) { c.MaxMessages = 2 })
	for i := range 2 {
		if code, _, text := post(t, s.URL(), event("b", fmt.Sprint(i))); code != 200 {
			t.Fatalf("POST %d: %d %s", i, code, text)
		}
	}
	code, h, text := post(t, s.URL(), event("b", "over"))
	if code != 503 || h.Get("Retry-After") == "" || !strings.Contains(text, "limit of 2") {
		t.Fatalf("over the limit: %d (Retry-After %q) %s; want 503 with Retry-After", code, h.Get("Retry-After"), text)
	}
	if n := s.Spooled(); n != 2 {
		t.Fatalf("%d spooled, want 2", n)
	}
	msgs, err := s.Receive(context.Background(), 1)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Receive: %v, %v", msgs, err)
	}
	s.Delete(msgs[0])
	s.Close() // commits the delete
	s2 := newSource(t, func(c *Config) { c.MaxMessages = 2; c.Spool = s.cfg.Spool })
	if code, _, text := post(t, s2.URL(), event("b", "room")); code != 200 {
		t.Fatalf("after a delete: %d %s", code, text)
	}
}

// TestOpenRefuses: settings that cannot work are refused at open, with the setting named.
func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		url  string
		opts queue.Options
		says string
	}{
		{"http://0.0.0.0:0/minio", queue.Options{}, "needs a bearer token"},
		{"http://:0/minio?token=", queue.Options{}, ""}, // empty host: loopback, so no token needed
		{"https://127.0.0.1:0/minio", queue.Options{}, "needs --tls-cert and --tls-key"},
		{"http://127.0.0.1:0/minio", queue.Options{TLSCert: "c.pem", TLSKey: "k.pem"}, "use https://"},
		{"http://127.0.0.1:0/minio?tokn=x", queue.Options{}, `unknown parameter "tokn"`},
		{"http://127.0.0.1:0/minio?token=a", queue.Options{Token: "b"}, "differ"},
		{"http://u:p@127.0.0.1:0/minio", queue.Options{}, "no user or password"},
		{"http://127.0.0.1:0/minio", queue.Options{SpoolMaxMessages: -1}, "spool-max-messages"},
	}
	for i, c := range cases {
		c.opts.Spool, c.opts.Logger = filepath.Join(dir, fmt.Sprintf("s%d.db", i)), quiet
		src, err := queue.Open(context.Background(), c.url, c.opts)
		if c.says == "" {
			if err != nil {
				t.Errorf("%s: %v", c.url, err)
			} else {
				src.Close()
			}
			continue
		}
		if err == nil {
			src.Close()
			t.Errorf("%s %+v: opened, want an error saying %q", c.url, c.opts, c.says)
		} else if !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want it to say %q", c.url, err, c.says)
		}
	}
	// Beyond loopback with a token it listens.
	src, err := queue.Open(context.Background(), "http://0.0.0.0:0/minio", queue.Options{Token: "t", Spool: filepath.Join(dir, "any.db"), Logger: quiet})
	if err != nil {
		t.Fatalf("0.0.0.0 with a token: %v", err)
	}
	src.Close()
}

// TestSpoolBelongsToOneProcess: a spool in use cannot be opened a second time.
func TestSpoolBelongsToOneProcess(t *testing.T) {
	s := newSource(t)
	_, err := New(context.Background(), Config{Addr: "127.0.0.1:0", Spool: s.cfg.Spool, Logger: quiet})
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("a second open of the same spool: %v, want 'in use by another process'", err)
	}
}

// TestSpoolLimitUnderConcurrentPosts: POSTs arriving together, committed in one group, are
// taken up to the limit exactly.
func TestSpoolLimitUnderConcurrentPosts(t *testing.T) {
	s := newSource(t, func(c *Config) { c.MaxMessages = 5 })
	codes := make(chan int, 20)
	for i := range 20 {
		go func() {
			resp, err := http.Post(s.URL(), "application/json", strings.NewReader(event("b", fmt.Sprint(i))))
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	count := map[int]int{}
	for range 20 {
		count[<-codes]++
	}
	if count[200] != 5 || count[503] != 15 || s.Spooled() != 5 {
		t.Fatalf("20 POSTs at once with room for 5: %v, %d spooled", count, s.Spooled())
	}
}
