package queue

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Options are what the daemon tells a source when it opens one. Transport settings of its own
// (a consumer group, a dead-letter subject, credentials) come from the URL's query; these are
// the daemon's own settings every transport may need.
type Options struct {
	Logger *slog.Logger
	// Trace, when set, is told the flow in words (--trace).
	Trace func(format string, args ...any)
	// AckTimeout is how long a received message stays invisible to other consumers without a
	// renewal (SQS visibility timeout, NATS AckWait); the source renews it while the message is
	// held. 0: the transport's default.
	AckTimeout time.Duration
	// WaitTime is the longest one Receive may block waiting for messages (a long poll).
	WaitTime time.Duration
	// CallTimeout is the deadline of each call to the broker (a Receive gets WaitTime on top).
	CallTimeout time.Duration
	// MaxInFlight is the most messages the daemon holds at once (workers + prefetch): a
	// transport that pushes (AMQP's prefetch, Kafka's fetches) must not hold more than this.
	MaxInFlight int
	// Webhook settings (--spool, --spool-max-messages, --tls-cert, --tls-key, --webhook-token),
	// for a source that listens.
	Spool            string
	SpoolMaxMessages int
	TLSCert, TLSKey  string
	Token            string
	// Client is a ready client a source may use instead of making its own (the SQS API client
	// the daemon built from the standard AWS configuration); nil when there is none.
	Client any
}

// Opener opens a Source for a URL whose scheme it registered.
type Opener func(ctx context.Context, u *url.URL, opts Options) (Source, error)

type entry struct {
	name  string
	match func(*url.URL) bool
	open  Opener
}

var (
	registryMu sync.RWMutex
	registry   = map[string][]entry{} // by scheme
)

// Register makes Open serve URLs of scheme with open, the database/sql and gocloud.dev way: a
// source package registers itself in an init function, and the daemon names none of them.
// match, when not nil, narrows which URLs of that scheme are this source's (SQS and the webhook
// both take https URLs): openers with a match are asked first, in the order they registered;
// an opener with none takes the rest. name is the source's name in metrics and the log.
func Register(scheme, name string, match func(*url.URL) bool, open Opener) {
	registryMu.Lock()
	defer registryMu.Unlock()
	scheme = strings.ToLower(scheme)
	e := entry{name: name, match: match, open: open}
	if match == nil {
		registry[scheme] = append(registry[scheme], e)
		return
	}
	i := slices.IndexFunc(registry[scheme], func(e entry) bool { return e.match == nil })
	if i < 0 {
		i = len(registry[scheme])
	}
	registry[scheme] = slices.Insert(registry[scheme], i, e)
}

// Lookup returns the name of the source that serves rawURL, and its parsed form.
func Lookup(rawURL string) (name string, u *url.URL, open Opener, err error) {
	u, err = url.Parse(rawURL)
	if err != nil {
		return "", nil, nil, fmt.Errorf("source: %q is not a URL: %v", rawURL, err)
	}
	registryMu.RLock()
	defer registryMu.RUnlock()
	for _, e := range registry[strings.ToLower(u.Scheme)] {
		if e.match == nil || e.match(u) {
			return e.name, u, e.open, nil
		}
	}
	return "", nil, nil, fmt.Errorf("source: %q: no source for scheme %q (known: %s)", Redact(rawURL), u.Scheme, strings.Join(Schemes(), ", "))
}

// Open opens the source rawURL names.
func Open(ctx context.Context, rawURL string, opts Options) (Source, error) {
	_, u, open, err := Lookup(rawURL)
	if err != nil {
		return nil, err
	}
	return open(ctx, u, opts)
}

// OpenAs opens rawURL with the source registered under name for the URL's scheme, whatever the
// match functions say: --queue-url is SQS's spelling, and its URL is an SQS queue whatever its
// host (a local SQS the match does not recognise would otherwise go to the webhook).
func OpenAs(ctx context.Context, name, rawURL string, opts Options) (Source, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("source: %q is not a URL: %v", Redact(rawURL), err)
	}
	registryMu.RLock()
	var open Opener
	for _, e := range registry[strings.ToLower(u.Scheme)] {
		if e.name == name {
			open = e.open
			break
		}
	}
	registryMu.RUnlock()
	if open == nil {
		return nil, fmt.Errorf("source: %q: no %s source for scheme %q (known: %s)", Redact(rawURL), name, u.Scheme, strings.Join(Schemes(), ", "))
	}
	return open(ctx, u, opts)
}

// Schemes lists the registered URL schemes, sorted.
func Schemes() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := make([]string, 0, len(registry))
	for s := range registry {
		out = append(out, s+"://")
	}
	sort.Strings(out)
	return out
}

// Redact returns rawURL without its secrets (a password, and query parameters that name a
// token, a password or credentials), for the log and the status page.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	q := u.Query()
	changed := false
	for k := range q {
		switch strings.ToLower(k) {
		case "token", "password", "pass", "secret", "creds", "sasl", "sasl_password", "x-amz-signature", "x-amz-credential", "x-amz-security-token":
			q.Set(k, "xxxxx")
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// Depther is a Source that can tell how many messages wait in its queue (visible) and how many
// are held by consumers (in flight). Optional: the status page and the progress line show it
// where a source implements it.
type Depther interface {
	Depth(ctx context.Context) (visible, inFlight int, err error)
}

// Checker is a Source that can check, at start, that it may receive (and dead-letter where one
// is configured); its error names the setting at fault. Optional.
type Checker interface {
	Check(ctx context.Context) error
}
