package queue

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Publisher sends notification bodies to where a source consumes them, as S3 would: what
// `palleto backfill --to URL` publishes through. Safe for concurrent use.
type Publisher interface {
	// Publish sends every body, each at least once, and returns once the transport has taken
	// them all (stored, acknowledged), or an error saying how many were not.
	Publish(ctx context.Context, bodies []string) error
	// Check fails when the destination cannot take messages (missing, refusing the
	// credentials); its error names the setting at fault.
	Check(ctx context.Context) error
	Close() error
}

// PublisherOpener opens a Publisher for a URL whose scheme it registered.
type PublisherOpener func(ctx context.Context, u *url.URL, opts Options) (Publisher, error)

type pubEntry struct {
	name  string
	match func(*url.URL) bool
	open  PublisherOpener
}

var (
	pubMu      sync.RWMutex
	publishers = map[string][]pubEntry{} // by scheme
)

// RegisterPublisher makes OpenPublisher serve URLs of scheme with open, as Register does for
// sources (match narrows, and openers with one are asked first).
func RegisterPublisher(scheme, name string, match func(*url.URL) bool, open PublisherOpener) {
	pubMu.Lock()
	defer pubMu.Unlock()
	scheme = strings.ToLower(scheme)
	e := pubEntry{name: name, match: match, open: open}
	if match == nil {
		publishers[scheme] = append(publishers[scheme], e)
		return
	}
	i := slices.IndexFunc(publishers[scheme], func(e pubEntry) bool { return e.match == nil })
	if i < 0 {
		i = len(publishers[scheme])
	}
	publishers[scheme] = slices.Insert(publishers[scheme], i, e)
}

// OpenPublisher opens the publisher rawURL names.
func OpenPublisher(ctx context.Context, rawURL string, opts Options) (Publisher, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("to: %q is not a URL: %v", Redact(rawURL), err)
	}
	pubMu.RLock()
	var open PublisherOpener
	var known []string
	for s := range publishers {
		known = append(known, s+"://")
	}
	for _, e := range publishers[strings.ToLower(u.Scheme)] {
		if e.match == nil || e.match(u) {
			open = e.open
			break
		}
	}
	pubMu.RUnlock()
	if open == nil {
		sort.Strings(known)
		return nil, fmt.Errorf("to: %q: nothing publishes to scheme %q (known: %s)", Redact(rawURL), u.Scheme, strings.Join(known, ", "))
	}
	return open(ctx, u, opts)
}
