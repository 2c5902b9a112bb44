// Package webhook is a queue.Source that listens: S3-compatible stores (MinIO's webhook target,
// Ceph RGW's HTTP push endpoint) POST their bucket notifications, AWS-format "Records", to
// --source http://127.0.0.1:PORT/PATH (https:// with a certificate), and each event is written
// to a durable local spool (SQLite, WAL, synchronous commits) before it is answered 200. The
// spool is then a source like any other: messages are leased by demand and kept leased while
// worked on, retried after a delay, released, dead-lettered into the spool's failures table.
//
// Answers: 200 once the event is on disk (an s3:TestEvent is answered 200 and not spooled);
// 400 not a JSON object with a non-empty Records array; 401 bearer token missing or wrong; 413
// a body over 1 MiB; 503 with Retry-After when the spool holds --spool-max-messages or cannot
// be written (the disk is full): the sender keeps the event and sends it again.
//
// A spool belongs to one process (the database is locked while open): scale out with a broker
// (NATS, Kafka, SQS) instead. Messages a killed process held are receivable again as soon as
// the spool is opened again.
package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/palleto/palleto/queue"
)

// Defaults and limits.
const (
	DefaultSpool       = "palleto-spool.db"
	DefaultMaxMessages = 1_000_000
	DefaultAckTimeout  = time.Minute
	DefaultWaitTime    = 20 * time.Second
	DefaultCallTimeout = 10 * time.Second
	// MaxBody is the largest event body taken; a larger one is answered 413.
	MaxBody = 1 << 20
	// maxPosts bounds the POST bodies read and spooled at once (memory: maxPosts x MaxBody).
	maxPosts = 32
)

func init() {
	queue.Register("http", "webhook", nil, open)
	queue.Register("https", "webhook", nil, open)
}

func open(ctx context.Context, u *url.URL, opts queue.Options) (queue.Source, error) {
	cfg, err := ConfigFromURL(u, opts)
	if err != nil {
		return nil, err
	}
	return New(ctx, cfg)
}

// Config is a webhook source's settings.
type Config struct {
	// Addr is the host:port to listen on; Path the URL path events are POSTed to.
	Addr, Path string
	// TLSCert and TLSKey, both set, make it listen with TLS (https://).
	TLSCert, TLSKey string
	// Token, when set, must come with every POST: "Authorization: Bearer TOKEN" (MinIO's
	// auth_token), the password of Basic auth, or ?token=TOKEN on the request's URL (for senders
	// that cannot set a header). Required to listen on an address that is not loopback.
	Token string
	// Spool is the spool's file; MaxMessages the most messages it holds (a POST beyond is
	// answered 503).
	Spool       string
	MaxMessages int
	// AckTimeout is a lease's length (renewed every third of it while held); WaitTime the
	// longest a Receive waits with nothing due; CallTimeout the deadline of each spool
	// transaction and each answer's wait for it.
	AckTimeout, WaitTime, CallTimeout time.Duration
	Logger                            *slog.Logger
	Trace                             func(format string, args ...any)
}

// ConfigFromURL reads a webhook source URL (http://HOST:PORT/PATH[?token=T], or https://) and
// the daemon's options. A zero option takes its default.
func ConfigFromURL(u *url.URL, opts queue.Options) (Config, error) {
	c := Config{Path: u.Path, TLSCert: opts.TLSCert, TLSKey: opts.TLSKey, Token: opts.Token, Spool: opts.Spool,
		MaxMessages: opts.SpoolMaxMessages, AckTimeout: opts.AckTimeout, WaitTime: opts.WaitTime, CallTimeout: opts.CallTimeout,
		Logger: opts.Logger, Trace: opts.Trace}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return c, fmt.Errorf("source: %s: a webhook URL is http:// or https://", queue.Redact(u.String()))
	}
	if u.User != nil {
		return c, fmt.Errorf("source: %s: a webhook URL takes no user or password (the token is --webhook-token or token=)", queue.Redact(u.String()))
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		host = "127.0.0.1"
	}
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[scheme]
	}
	c.Addr = net.JoinHostPort(host, port)
	if c.Path == "" {
		c.Path = "/"
	}
	q := u.Query()
	for k := range q {
		if k != "token" {
			return c, fmt.Errorf("source: %s: unknown parameter %q (a webhook URL takes token=)", queue.Redact(u.String()), k)
		}
	}
	if t := q.Get("token"); t != "" {
		if c.Token != "" && c.Token != t {
			return c, fmt.Errorf("source: %s: token= and --webhook-token differ: give one", queue.Redact(u.String()))
		}
		c.Token = t
	}
	if scheme == "https" && (c.TLSCert == "" || c.TLSKey == "") {
		return c, fmt.Errorf("source: %s: https:// needs --tls-cert and --tls-key (the certificate and key to listen with)", queue.Redact(u.String()))
	}
	if scheme == "http" && (c.TLSCert != "" || c.TLSKey != "") {
		return c, fmt.Errorf("source: %s: --tls-cert/--tls-key are given but the URL is http://: use https://", queue.Redact(u.String()))
	}
	return c, nil
}

func (c *Config) defaults() {
	if c.Spool == "" {
		c.Spool = DefaultSpool
	}
	if c.MaxMessages == 0 {
		c.MaxMessages = DefaultMaxMessages
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.WaitTime == 0 {
		c.WaitTime = DefaultWaitTime
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.Path == "" {
		c.Path = "/"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate names the first bad setting, its value and its bound (after the defaults).
func (c Config) Validate() error {
	c.defaults()
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("source: listen address %q: %v", c.Addr, err)
	}
	if !loopback(host) && c.Token == "" {
		return fmt.Errorf("source: listening on %s, which is not loopback, needs a bearer token (--webhook-token, or token= in the URL): anyone who reaches it could make Palleto read objects", c.Addr)
	}
	switch {
	case c.MaxMessages < 1:
		return fmt.Errorf("spool-max-messages: %d must be 1 or more", c.MaxMessages)
	case c.AckTimeout < time.Second || c.AckTimeout > 12*time.Hour:
		return fmt.Errorf("visibility-timeout: %s is out of range [1s, 12h] (the webhook spool's lease)", c.AckTimeout)
	case c.WaitTime < 0 || c.WaitTime > time.Hour:
		return fmt.Errorf("wait-time: %s is out of range [0s, 1h]", c.WaitTime)
	case c.CallTimeout < 100*time.Millisecond || c.CallTimeout > 10*time.Minute:
		return fmt.Errorf("source call timeout: %s is out of range [100ms, 10m]", c.CallTimeout)
	case !strings.HasPrefix(c.Path, "/"):
		return fmt.Errorf("source: path %q must start with /", c.Path)
	}
	return nil
}

// loopback says whether host names only this machine.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Source is the webhook and its spool. Safe for concurrent use.
type Source struct {
	cfg  Config
	log  *slog.Logger
	sp   *spool
	srv  *http.Server
	addr string
	held heldSet

	wakeMu sync.Mutex
	wake   chan struct{} // closed and replaced at each change that may make a message due

	slots     chan struct{} // POSTs being read and spooled
	closing   chan struct{} // closed by Close
	bg        sync.WaitGroup
	errMu     sync.Mutex
	srvErr    error // the listener's, once it stopped by itself
	down      atomic.Bool
	closeOnce sync.Once
	// stopKeepAlive ends the lease renewals.
	stopKeepAlive context.CancelFunc
}

var (
	_ queue.Source  = (*Source)(nil)
	_ queue.Depther = (*Source)(nil)
	_ queue.Checker = (*Source)(nil)
)

// New opens the spool (creating it when missing) and starts listening. Close it.
func New(ctx context.Context, cfg Config) (*Source, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var tlsCfg *tls.Config
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("tls-cert/tls-key: %s, %s: %w", cfg.TLSCert, cfg.TLSKey, err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	sp, err := openSpool(ctx, cfg.Spool, int64(cfg.MaxMessages), cfg.CallTimeout, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		sp.close()
		return nil, fmt.Errorf("source: webhook listen on %s: %w", cfg.Addr, err)
	}
	s := &Source{cfg: cfg, log: cfg.Logger, sp: sp, addr: ln.Addr().String(), held: heldSet{m: map[int64]int{}},
		wake: make(chan struct{}), slots: make(chan struct{}, maxPosts), closing: make(chan struct{})}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: time.Minute + cfg.CallTimeout, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: log.New(slogWriter{s.log}, "", 0)}
	kctx, stop := context.WithCancel(context.Background())
	s.stopKeepAlive = stop
	s.bg.Add(2)
	go func() { defer s.bg.Done(); s.keepAlive(kctx) }()
	go func() {
		defer s.bg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.errMu.Lock()
			s.srvErr = fmt.Errorf("webhook listener on %s stopped: %w", s.addr, err)
			s.errMu.Unlock()
			s.log.Error("webhook listener stopped; events are no longer taken", "addr", s.addr, "error", err)
		}
	}()
	if host, _, _ := net.SplitHostPort(cfg.Addr); !loopback(host) && tlsCfg == nil {
		s.log.Warn("webhook listens beyond loopback over plain http: the bearer token travels in clear; use https:// with --tls-cert/--tls-key", "addr", s.addr)
	}
	visible, _, _ := s.Depth(ctx)
	s.log.Info("webhook listening", "url", s.URL(), "spool", cfg.Spool, "spooled", sp.count.Load(), "receivable", visible)
	return s, nil
}

// Addr is the address it listens on (the port chosen, when the URL said 0).
func (s *Source) Addr() string { return s.addr }

// URL is where to POST events (without the token).
func (s *Source) URL() string {
	scheme := "http"
	if s.cfg.TLSCert != "" {
		scheme = "https"
	}
	return scheme + "://" + s.addr + s.cfg.Path
}

// Spooled is the number of messages in the spool (receivable, leased or delayed).
func (s *Source) Spooled() int64 { return s.sp.count.Load() }

func (s *Source) serveErr() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.srvErr
}

func (s *Source) trace(format string, args ...any) {
	if s.cfg.Trace != nil {
		s.cfg.Trace(format, args...)
	}
}

// slogWriter sends the http.Server's own complaints (TLS handshakes, broken requests) to the
// debug log: they are the sender's problems, told to it in the answer.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Debug("webhook http: " + strings.TrimSpace(string(p)))
	return len(p), nil
}
