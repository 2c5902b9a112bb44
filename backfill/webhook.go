package backfill

import (
	"context"
	"errors"
	"fmt"
	"github.com/palleto/palleto/queue"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

func init() {
	// SQS registers a publisher for http(s) URLs that look like queue URLs (with a match, so it
	// is asked first); the rest are webhooks.
	queue.RegisterPublisher("http", "webhook", nil, openWebhook)
	queue.RegisterPublisher("https", "webhook", nil, openWebhook)
}

// webhookPublisher POSTs each notification to a webhook (`palleto run --source http://...`),
// with the URL's token= as a bearer token; up to 4 POSTs at once, each under its own deadline,
// tried again (5 tries, with backoff, or after the answer's Retry-After) when the network
// fails or the webhook answers 429 or 5xx. Another 4xx fails at once: the webhook refused it.
type webhookPublisher struct {
	url    string // without the token
	shown  string // for errors
	token  string
	client *http.Client
	// tries and wait pace the tries of one POST: 5, from 200ms, doubling.
	tries int
	wait  time.Duration
}

func openWebhook(_ context.Context, u *url.URL, _ queue.Options) (queue.Publisher, error) {
	p := &webhookPublisher{client: &http.Client{Timeout: 30 * time.Second}, tries: 5, wait: 200 * time.Millisecond}
	c := *u
	q := c.Query()
	p.token = q.Get("token")
	q.Del("token")
	c.RawQuery = q.Encode()
	p.url, p.shown = c.String(), c.String()
	if c.Host == "" {
		return nil, fmt.Errorf("to: %s: a webhook URL needs a host (http://HOST:PORT/PATH)", p.shown)
	}
	return p, nil
}

func (p *webhookPublisher) Close() error { p.client.CloseIdleConnections(); return nil }

// Check asks the webhook with a GET (Palleto's answers 200); no answer, a 404 (a wrong path)
// or a 5xx fails.
func (p *webhookPublisher) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return fmt.Errorf("to: %s: %w", p.shown, err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("to: webhook %s does not answer: %w", p.shown, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode >= 500 {
		return fmt.Errorf("to: webhook %s answers GET with %s", p.shown, resp.Status)
	}
	return nil
}

// Publish POSTs every body, up to 4 at once.
func (p *webhookPublisher) Publish(ctx context.Context, bodies []string) error {
	var wg sync.WaitGroup
	errs := make([]error, len(bodies))
	slots := make(chan struct{}, 4)
	for i, b := range bodies {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err()
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			errs[i] = p.post(ctx, b)
		}()
	}
	wg.Wait()
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d notifications not posted to %s: %w", len(failed), len(bodies), p.shown, failed[0])
	}
	return nil
}

// post sends one body until the webhook takes it (2xx), refuses it (4xx but 429), or the tries
// are spent.
func (p *webhookPublisher) post(ctx context.Context, body string) error {
	wait := p.wait
	var last error
	for try := 0; try < p.tries; try++ {
		if try > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			wait *= 2
		}
		retryAfter, err := p.once(ctx, body)
		if err == nil {
			return nil
		}
		var refused refusedError
		if errors.As(err, &refused) || ctx.Err() != nil {
			return err
		}
		last = err
		if retryAfter > wait {
			wait = min(retryAfter, 30*time.Second)
		}
	}
	return fmt.Errorf("after %d tries: %w", p.tries, last)
}

// refusedError is an answer that another try would get too.
type refusedError struct{ error }

// once POSTs body once, under the client's deadline.
func (p *webhookPublisher) once(ctx context.Context, body string) (retryAfter time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, strings.NewReader(body))
	if err != nil {
		return 0, refusedError{err}
	}
	req.Header.Set("Content-Type", "application/json")
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("POST %s: %w", p.shown, err)
	}
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return 0, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return time.Duration(secs) * time.Second, fmt.Errorf("POST %s: %s: %s", p.shown, resp.Status, strings.TrimSpace(string(text)))
	}
	return 0, refusedError{fmt.Errorf("POST %s: %s: %s", p.shown, resp.Status, strings.TrimSpace(string(text)))}
}
