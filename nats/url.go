package nats

import (
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/palleto/palleto/queue"
)

// Config is what a nats:// URL says:
//
//	nats://[USER:PASS@]HOST:PORT[,HOST:PORT...]/STREAM/CONSUMER[?subject=S&dlq=SUBJECT&creds=FILE&token=T&tls=true&tls_ca=FILE]
type Config struct {
	Servers  []string // nats://HOST:PORT each (tls://HOST:PORT with TLS)
	Stream   string
	Consumer string
	// Subject, when set, is the subject the stream captures and the consumer filters: the stream
	// and the consumer are created with it when missing (otherwise they must exist).
	Subject string
	// DLQ, when set, is the subject dead letters are published to (a stream must capture it).
	DLQ string
	// User and Password from the URL, Token from token=, Creds a .creds file (creds=).
	User, Password, Token, Creds string
	// TLS connects with TLS (tls=true, or a tls:// server); TLSCA, when set, is the CA file to
	// trust instead of the system's.
	TLS   bool
	TLSCA string
}

// queryKeys are the query parameters a nats:// URL takes; any other is a mistake.
var queryKeys = []string{"subject", "dlq", "creds", "token", "tls", "tls_ca"}

// ParseURL reads a nats:// URL. Its errors name the part at fault and the form expected.
func ParseURL(u *url.URL) (Config, error) {
	const form = "nats://HOST:PORT/STREAM/CONSUMER[?subject=S&dlq=SUBJECT&creds=FILE&token=T&tls=true]"
	var c Config
	if u.Scheme != "nats" {
		return c, fmt.Errorf("nats: %q is not a nats:// URL (%s)", redacted(u), form)
	}
	if u.Host == "" {
		return c, fmt.Errorf("nats: %q names no server (%s)", redacted(u), form)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return c, fmt.Errorf("nats: %q: the path must be /STREAM/CONSUMER (%s)", redacted(u), form)
	}
	c.Stream, c.Consumer = parts[0], parts[1]
	for _, name := range parts {
		if strings.ContainsAny(name, ".*> \t") {
			return c, fmt.Errorf("nats: %q: %q is not a stream or consumer name (no '.', '*', '>' or spaces)", redacted(u), name)
		}
	}
	q := u.Query()
	for k := range q {
		if !contains(queryKeys, k) {
			return c, fmt.Errorf("nats: %q: unknown parameter %q (known: %s)", redacted(u), k, strings.Join(queryKeys, ", "))
		}
	}
	c.Subject, c.DLQ, c.Creds, c.Token, c.TLSCA = q.Get("subject"), q.Get("dlq"), q.Get("creds"), q.Get("token"), q.Get("tls_ca")
	if v := q.Get("tls"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("nats: tls=%q is not true or false", v)
		}
		c.TLS = b
	}
	c.TLS = c.TLS || c.TLSCA != ""
	for _, s := range []struct{ name, v string }{{"subject", c.Subject}, {"dlq", c.DLQ}} {
		if s.v != "" && !validSubject(s.v) {
			return c, fmt.Errorf("nats: %s=%q is not a subject (tokens separated by '.', no spaces)", s.name, s.v)
		}
	}
	if c.DLQ != "" && strings.ContainsAny(c.DLQ, "*>") {
		return c, fmt.Errorf("nats: dlq=%q: a dead letter is published to one subject, without wildcards", c.DLQ)
	}
	if c.DLQ != "" && c.Subject != "" && subjectMatches(c.Subject, c.DLQ) {
		return c, fmt.Errorf("nats: dlq=%q is within subject=%q: dead letters would come back to the consumer", c.DLQ, c.Subject)
	}
	if c.Creds != "" {
		if _, err := os.Stat(c.Creds); err != nil {
			return c, fmt.Errorf("nats: creds: %v", err)
		}
	}
	if u.User != nil {
		c.User = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	scheme := "nats"
	if c.TLS {
		scheme = "tls"
	}
	for _, h := range strings.Split(u.Host, ",") {
		if h = strings.TrimSpace(h); h != "" {
			if !strings.Contains(h, ":") {
				h += ":4222"
			}
			c.Servers = append(c.Servers, scheme+"://"+h)
		}
	}
	return c, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func redacted(u *url.URL) string { return queue.Redact(u.String()) }

// validSubject: tokens separated by '.', none empty, no whitespace; '*' a whole token, '>' the
// whole last token.
func validSubject(s string) bool {
	if strings.ContainsAny(s, " \t\r\n") {
		return false
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return false
		case strings.Contains(t, ">") && (t != ">" || i != len(toks)-1):
			return false
		case strings.Contains(t, "*") && t != "*":
			return false
		}
	}
	return true
}

// subjectMatches reports whether the literal subject subj is matched by filter ('*' one token,
// '>' one or more tokens at the end).
func subjectMatches(filter, subj string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subj, ".")
	for i, t := range f {
		if t == ">" {
			return len(s) > i
		}
		if i >= len(s) || t != "*" && t != s[i] {
			return false
		}
	}
	return len(f) == len(s)
}
