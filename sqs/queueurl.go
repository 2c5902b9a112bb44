package sqs

import (
	"fmt"
	"net/url"
	"strings"
)

// CheckDLQ refuses a dead-letter queue that is the queue consumed: each dead letter would be
// received again, fail again and be sent again, a new message each time, for ever.
func CheckDLQ(dlq, queue string) error {
	if dlq != "" && sameQueue(dlq, queue) {
		return fmt.Errorf("dlq-url: %q is the queue of --queue-url: every dead letter would be received and dead-lettered again, for ever (give a queue of its own)", dlq)
	}
	return nil
}

// sameQueue reports whether two queue URLs name the same queue: the same scheme, host (any
// case) and port (the scheme's default when none is given), and the same path but for a final
// slash.
func sameQueue(a, b string) bool {
	ua, errA := url.Parse(a)
	ub, errB := url.Parse(b)
	if errA != nil || errB != nil {
		return a == b
	}
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		if strings.EqualFold(u.Scheme, "http") {
			return "80"
		}
		return "443"
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Hostname(), ub.Hostname()) && port(ua) == port(ub) &&
		strings.TrimRight(ua.Path, "/") == strings.TrimRight(ub.Path, "/")
}
