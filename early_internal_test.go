package palleto

import (
	"context"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/palleto/palleto/fetch"
)

// gatedS3 serves fakeS3's objects; the body of "big" holds its last byte back until a GET of
// "next" has come in (the worker's next object opened early), or until 10 s passed.
type gatedS3 struct {
	*fakeS3
	nextGET chan struct{}
	once    sync.Once
	mu      sync.Mutex
	early   bool // the GET of "next" came while "big" still had a byte to send
	closed  map[string]int
}

func (g *gatedS3) GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	key := *in.Key
	if key == "next" {
		g.once.Do(func() { close(g.nextGET) })
	}
	out, err := g.fakeS3.GetObject(ctx, in, opts...)
	if err != nil {
		return nil, err
	}
	body := &gatedBody{g: g, key: key, r: out.Body, left: *out.ContentLength}
	out.Body = body
	return out, nil
}

type gatedBody struct {
	g    *gatedS3
	key  string
	r    io.ReadCloser
	left int64
}

func (b *gatedBody) Read(p []byte) (int, error) {
	if b.key == "big" && b.left == 1 {
		select {
		case <-b.g.nextGET:
			b.g.mu.Lock()
			b.g.early = true
			b.g.mu.Unlock()
		case <-time.After(10 * time.Second):
		}
	}
	if b.key == "big" && b.left > 1 && int64(len(p)) > b.left-1 {
		p = p[:b.left-1]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *gatedBody) Close() error {
	b.g.mu.Lock()
	b.g.closed[b.key]++
	b.g.mu.Unlock()
	return b.r.Close()
}

// TestNextObjectIsOpenedBeforeTheLastOneEnds: one worker, a big object then a small one in two
// messages. The big object's last byte is held back until the small one's GET comes in: the
// worker takes its next message near the end of the big object and sends that GET early. Both
// results are right, both messages deleted, every body closed.
func TestNextObjectIsOpenedBeforeTheLastOneEnds(t *testing.T) {
	big := strings.Repeat("a line of text\n", 2<<20) // 30 MiB: big enough to take the next early
	var g *gatedS3
	r := newRig(t, map[string]fakeObject{"big": {body: big}, "next": {body: "one\ntwo\n"}}, func(c *Config) {
		c.Engine.Workers = 1
		c.Engine.ExitWhenIdle = 300 * time.Millisecond
	}, func(f *fakeS3) fetch.API {
		g = &gatedS3{fakeS3: f, nextGET: make(chan struct{}), closed: map[string]int{}}
		return g
	})
	r.src.Send(event("big"))
	r.src.Send(event("next"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sum, err := r.d.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.early {
		t.Error("the next object's GET did not go out before the big object's last byte")
	}
	if sum.Objects != 2 || sum.Lines != 2<<20+2 {
		t.Errorf("summary: %d objects, %d lines; want 2, %d", sum.Objects, sum.Lines, 2<<20+2)
	}
	for _, key := range []string{"big", "next"} {
		if g.closed[key] != 1 {
			t.Errorf("body of %s closed %d times, want once", key, g.closed[key])
		}
	}
	if ev := r.src.Events(); !slices.Contains(ev, "delete m1") || !slices.Contains(ev, "delete m2") {
		t.Errorf("queue events %v: both messages must be deleted", ev)
	}
	if !strings.Contains(r.logs.String(), `key=next`) {
		t.Errorf("no log line of the next object:\n%s", r.logs.String())
	}
}
