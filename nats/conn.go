package nats

import (
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	natsio "github.com/nats-io/nats.go"
)

// connectOptions: reconnect for ever with a growing wait (100ms doubling to 2s, jittered), a
// connection found dead within about a minute (pings every 20s, 3 unanswered), the state kept
// for Ready, and the URL's credentials and TLS.
func (s *Source) connectOptions() []natsio.Option {
	o := []natsio.Option{
		natsio.Name("palleto"),
		natsio.Timeout(min(s.call, 10*time.Second)),
		natsio.MaxReconnects(-1),
		natsio.CustomReconnectDelay(func(attempts int) time.Duration {
			d := min(100*time.Millisecond<<min(attempts, 5), 2*time.Second)
			return d/2 + time.Duration(time.Now().UnixNano()%int64(d/2))
		}),
		natsio.PingInterval(20 * time.Second),
		natsio.MaxPingsOutstanding(3),
		natsio.DisconnectErrHandler(func(_ *natsio.Conn, err error) {
			s.connMu.Lock()
			first := s.down.IsZero()
			if first {
				s.down = time.Now()
			}
			if err != nil {
				s.cause = err
			}
			s.connMu.Unlock()
			if first {
				s.log.Warn("NATS connection lost; reconnecting (messages in flight are kept, nothing is acknowledged meanwhile)", "source", s.name, "error", err)
			}
		}),
		natsio.ReconnectHandler(func(nc *natsio.Conn) {
			s.connMu.Lock()
			since := s.down
			s.down, s.cause = time.Time{}, nil
			s.connMu.Unlock()
			s.log.Warn("NATS reconnected", "source", s.name, "server", nc.ConnectedUrlRedacted(), "down_for", time.Since(since).Round(time.Millisecond).String())
		}),
		natsio.ErrorHandler(func(_ *natsio.Conn, sub *natsio.Subscription, err error) {
			s.log.Warn("NATS asynchronous error", "source", s.name, "error", err)
		}),
	}
	c := s.cfg
	if c.User != "" {
		o = append(o, natsio.UserInfo(c.User, c.Password))
	}
	if c.Token != "" {
		o = append(o, natsio.Token(c.Token))
	}
	if c.Creds != "" {
		o = append(o, natsio.UserCredentials(c.Creds))
	}
	if c.TLS {
		o = append(o, natsio.Secure(&tls.Config{MinVersion: tls.VersionTLS12}))
		if c.TLSCA != "" {
			o = append(o, natsio.RootCAs(c.TLSCA))
		}
	}
	return o
}

// connected is nil while the connection is up, else why it is not.
func (s *Source) connected() error {
	if s.nc.IsConnected() {
		return nil
	}
	s.connMu.Lock()
	defer s.connMu.Unlock()
	why := "connection " + strings.ToLower(s.nc.Status().String())
	if s.cause != nil {
		why += ": " + s.cause.Error()
	}
	if !s.down.IsZero() {
		why += fmt.Sprintf(" (for %s; reconnecting)", time.Since(s.down).Round(time.Second))
	}
	return fmt.Errorf("nats %s: not connected to %s: %s", s.name, strings.Join(s.cfg.Servers, ","), why)
}
