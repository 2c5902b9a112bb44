package backfill

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// Publisher sends a backfill's notifications to a source that is not SQS (`palleto backfill
// --to URL`): a webhook, a NATS stream, ... Each transport registers one for its URL scheme.
// kafka.Publisher and amqp.Publisher are ones; a Publisher that also has Check(ctx) error is
// checked before the listing starts.
type Publisher interface {
	// Publish sends every body at least once, or returns why not (some may have been sent: the
	// page is sent again on resume, and the objects already done are found done).
	Publish(ctx context.Context, bodies []string) error
	Close()
}

// checker is a Publisher that can tell, before anything is sent, that its destination
// answers; its error names the destination.
type checker interface {
	Check(ctx context.Context) error
}

// PublisherOpener opens a Publisher for a URL whose scheme it registered.
type PublisherOpener func(ctx context.Context, u *url.URL) (Publisher, error)

var (
	publishersMu sync.RWMutex
	publishers   = map[string]PublisherOpener{}
)

// RegisterPublisher makes OpenPublisher serve URLs of scheme with open.
func RegisterPublisher(scheme string, open PublisherOpener) {
	publishersMu.Lock()
	defer publishersMu.Unlock()
	publishers[strings.ToLower(scheme)] = open
}

// OpenPublisher opens the publisher of rawURL's scheme.
func OpenPublisher(ctx context.Context, rawURL string) (Publisher, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("to: %q is not a URL: %v", rawURL, err)
	}
	publishersMu.RLock()
	open, ok := publishers[strings.ToLower(u.Scheme)]
	known := make([]string, 0, len(publishers))
	for s := range publishers {
		known = append(known, s+"://")
	}
	publishersMu.RUnlock()
	if !ok {
		sort.Strings(known)
		return nil, fmt.Errorf("to: no backfill publisher for scheme %q (known: %s, and SQS queue URLs)", u.Scheme, strings.Join(known, ", "))
	}
	return open(ctx, u)
}
