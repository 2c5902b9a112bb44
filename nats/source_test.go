package nats_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"

	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/nats"
	"github.com/palleto/palleto/queue"
	"github.com/palleto/palleto/queue/queuetest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// stream is a fresh stream name and subjects on the test nats-server, deleted at the end.
type stream struct {
	server, name, subject, dlq string
	js                         jetstream.JetStream
}

func newStream(t *testing.T) *stream {
	t.Helper()
	server := testenv.NATSURL(t)
	nc, err := natsio.Connect(server)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("%d%06d", time.Now().Unix()%100000, rand.IntN(1000000))
	s := &stream{server: server, name: "T" + id, subject: "palleto.test." + id, dlq: "palleto.dlq." + id, js: js}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		js.DeleteStream(ctx, s.name)
		nc.Close()
	})
	return s
}

// url is the source URL of consumer on s, creating both (subject=), with a dlq when asked.
func (s *stream) url(consumer string, dlq bool) string {
	u := strings.TrimSuffix(s.server, "/") + "/" + s.name + "/" + consumer + "?subject=" + s.subject
	if dlq {
		u += "&dlq=" + s.dlq
	}
	return u
}

func (s *stream) send(t *testing.T, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.js.Publish(ctx, s.subject, []byte(body)); err != nil {
		t.Fatalf("publish %s: %v", s.subject, err)
	}
}

func open(t *testing.T, rawURL string, ackWait time.Duration) queue.Source {
	t.Helper()
	src, err := queue.Open(context.Background(), rawURL, queue.Options{Logger: quiet, AckTimeout: ackWait, WaitTime: time.Second, CallTimeout: 5 * time.Second, MaxInFlight: 10})
	if err != nil {
		t.Fatalf("open %s: %v", rawURL, err)
	}
	return src
}

// TestConformance runs the queue.Source conformance suite against a real nats-server, with and
// without a dead-letter subject.
func TestConformance(t *testing.T) {
	testenv.NATSURL(t)
	const ackWait = 3 * time.Second
	for _, dlq := range []bool{false, true} {
		queuetest.Run(t, func(t *testing.T) queuetest.Env {
			s := newStream(t)
			src := open(t, s.url("C", dlq), ackWait)
			e := queuetest.Env{Source: src, Send: func(b string) { s.send(t, b) }, DLQ: dlq}
			if !dlq { // the held-message tests once: a dead-letter subject changes nothing of them
				e.AckTimeout = ackWait
				e.Another = func(t *testing.T) queue.Source { return open(t, s.url("C", dlq), ackWait) }
				e.Abandon = func() { nats.Abandon(src) }
			}
			return e
		})
	}
}

func TestParseURL(t *testing.T) {
	for _, tt := range []struct {
		url, want string // want: the error's text, or "" for valid
	}{
		{"nats://127.0.0.1:4222/S/C", ""},
		{"nats://a:4222,b:4223/S/C?subject=minio.events&dlq=minio.dead&token=t", ""},
		{"nats://127.0.0.1/S/C?tls=true", ""},
		{"nats://127.0.0.1:4222/S", "the path must be /STREAM/CONSUMER"},
		{"nats://127.0.0.1:4222/S/C/D", "the path must be /STREAM/CONSUMER"},
		{"nats:///S/C", "names no server"},
		{"nats://h/S.x/C", "is not a stream or consumer name"},
		{"nats://h/S/C?subjet=x", `unknown parameter "subjet"`},
		{"nats://h/S/C?tls=maybe", `tls="maybe" is not true or false`},
		{"nats://h/S/C?subject=a..b", "is not a subject"},
		{"nats://h/S/C?dlq=dead.*", "without wildcards"},
		{"nats://h/S/C?subject=minio.>&dlq=minio.dead", "dead letters would come back"},
		{"nats://h/S/C?creds=/no/such.creds", "creds"},
	} {
		u, err := url.Parse(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		_, err = nats.ParseURL(u)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("ParseURL(%s) = %v, want %q", tt.url, err, tt.want)
		}
	}
	u, _ := url.Parse("nats://u:p@a:4222,b:4223/S/C?tls=true&token=t")
	c, err := nats.ParseURL(u)
	if err != nil || fmt.Sprint(c.Servers) != "[tls://a:4222 tls://b:4223]" || c.User != "u" || c.Password != "p" || c.Token != "t" || !c.TLS {
		t.Errorf("ParseURL: %+v, %v", c, err)
	}
}
