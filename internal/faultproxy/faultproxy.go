// Package faultproxy is a TCP proxy for tests that injects the faults a network and a busy
// service produce: connections reset as they open, HTTP 503 answers, responses cut mid-body
// (after a random number of bytes), connections reset after a random lifetime (in the middle of
// a long poll, say), added latency, an outage (every connection refused, SetDown), and a peer
// that stops sending mid-response while keeping the connection open (StallNext). It knows just
// enough HTTP to answer 503, unless a test asks it to change answers (Config.Exchange).
package faultproxy

import (
	"bufio"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Config says which faults to inject. Probabilities are per new connection; the cut and the
// lifetime are drawn per connection from exponential distributions with the given means.
type Config struct {
	Target    string        // host:port to forward to
	Reset     float64       // probability a new connection is reset before any answer
	Err503    float64       // probability a new connection answers its first request 503 and closes
	MeanBytes int64         // reset after this many response bytes on average (0: never)
	MeanLife  time.Duration // reset after this long on average (0: never)
	Latency   time.Duration // up to this much delay before each response chunk (uniform)
	Seed      uint64
	// CutAt resets, for each N in it, the connection that carries the proxy's Nth response byte
	// (the responses of all connections counted together, in the order they pass): cuts that
	// happen whatever the interleaving, for a test that must see some. Marks closer than a
	// read (32 KiB) may fall in one chunk, which is cut once.
	CutAt []int64
	// Bandwidth caps what each connection carries to the client, in bytes per second (0: no
	// cap), and FirstByte delays the first byte of each response: S3 "as on AWS", where one GET
	// stream carries some 25-100 MB/s and answers in 10-50 ms, unlike loopback.
	Bandwidth int64
	FirstByte time.Duration
	// Exchange, when set, makes the proxy speak HTTP/1.1 on each connection (exchange.go) and
	// lets a test change what the server answers: rewrite a Content-Range, halve a total, change
	// an eTag, serve other bytes. The byte-level faults (MeanBytes, MeanLife, CutAt, Latency,
	// Bandwidth, FirstByte, StallNext) do not apply to such connections; Reset, Err503 and
	// SetDown do.
	Exchange Exchange
}

// Stats count the faults injected so far.
type Stats struct{ Conns, Resets, Errors503, Cuts, Expired, Refused, Stalls int64 }

// Proxy is a running fault-injecting proxy. Safe for concurrent use.
type Proxy struct {
	cfg                                Config
	ln                                 net.Listener
	enabled                            atomic.Bool
	down                               atomic.Bool
	stallConns, stallAfter             atomic.Int64
	live                               sync.Map // net.Conn -> struct{}: the client connections open now
	mu                                 sync.Mutex
	rnd                                *rand.Rand
	wg                                 sync.WaitGroup
	conns, resets, errs, cuts, expired atomic.Int64
	refused, stalls                    atomic.Int64
	total                              atomic.Int64 // response bytes passed, all connections
}

// Start listens on 127.0.0.1 with faults enabled.
func Start(cfg Config) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, ln: ln, rnd: rand.New(rand.NewPCG(cfg.Seed, 0x5eed))}
	p.enabled.Store(true)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.serve(c) }()
		}
	}()
	return p, nil
}

// URL is the proxy's http:// address.
func (p *Proxy) URL() string { return "http://" + p.ln.Addr().String() }

// SetFaults turns fault injection on or off for new connections.
func (p *Proxy) SetFaults(on bool) { p.enabled.Store(on) }

// SetDown starts (true) or ends an outage: while down, every new connection is reset as it
// opens, and the connections open when it starts are reset.
func (p *Proxy) SetDown(down bool) {
	p.down.Store(down)
	if down {
		p.live.Range(func(c, _ any) bool { reset(c.(net.Conn)); return true })
	}
}

// StallNext makes the next n connections stop forwarding their response after `after` bytes,
// keeping the connection open: a peer that went silent. The client must give up by itself.
func (p *Proxy) StallNext(n int, after int64) {
	p.stallAfter.Store(after)
	p.stallConns.Store(int64(n))
}

// Stats returns the counts so far.
func (p *Proxy) Stats() Stats {
	return Stats{p.conns.Load(), p.resets.Load(), p.errs.Load(), p.cuts.Load(), p.expired.Load(), p.refused.Load(), p.stalls.Load()}
}

// Close stops accepting and waits for the connections to end.
func (p *Proxy) Close() {
	p.ln.Close()
	p.wg.Wait()
}

func (p *Proxy) float() float64 { p.mu.Lock(); defer p.mu.Unlock(); return p.rnd.Float64() }

func (p *Proxy) exp(mean float64) float64 { return -mean * math.Log(1-p.float()) }

// cutMark takes n bytes of the proxy's response stream; it returns the offset in them of the
// first CutAt mark they carry, or -1.
func (p *Proxy) cutMark(n int64) int64 {
	if len(p.cfg.CutAt) == 0 || !p.enabled.Load() {
		return -1
	}
	end := p.total.Add(n)
	start := end - n
	for _, m := range p.cfg.CutAt {
		if m > start && m <= end {
			return m - start - 1 // the bytes before the mark pass; the mark's byte does not
		}
	}
	return -1
}

func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0) // close with RST, as a crashed peer or a middlebox does
	}
	c.Close()
}

func (p *Proxy) serve(client net.Conn) {
	p.conns.Add(1)
	if p.down.Load() {
		p.refused.Add(1)
		reset(client)
		return
	}
	p.live.Store(client, struct{}{})
	defer p.live.Delete(client)
	stallAt := int64(-1)
	if p.stallConns.Add(-1) >= 0 {
		stallAt = p.stallAfter.Load()
	}
	faults := p.enabled.Load()
	if faults && p.float() < p.cfg.Reset {
		p.resets.Add(1)
		reset(client)
		return
	}
	if faults && p.float() < p.cfg.Err503 {
		p.errs.Add(1)
		if _, err := http.ReadRequest(bufio.NewReader(client)); err == nil {
			io.WriteString(client, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nfaultproxy\r\n")
		}
		client.Close()
		return
	}
	server, err := net.Dial("tcp", p.cfg.Target)
	if err != nil {
		client.Close()
		return
	}
	if p.cfg.Exchange != nil {
		p.serveHTTP(client, server)
		return
	}
	cutAfter := int64(-1)
	if faults && p.cfg.MeanBytes > 0 {
		cutAfter = int64(p.exp(float64(p.cfg.MeanBytes)))
	}
	var kill *time.Timer
	var once sync.Once
	end := func(rst bool) {
		once.Do(func() {
			if rst {
				reset(client)
			} else {
				client.Close()
			}
			server.Close()
		})
	}
	if faults && p.cfg.MeanLife > 0 {
		kill = time.AfterFunc(time.Duration(p.exp(float64(p.cfg.MeanLife))), func() { p.expired.Add(1); end(true) })
		defer kill.Stop()
	}
	done := make(chan struct{})
	var requested atomic.Bool // the client sent a request whose answer has not begun
	go func() {               // requests, untouched
		defer close(done)
		io.Copy(server, &noting{r: client, flag: &requested})
		end(false)
	}()
	buf := make([]byte, 32<<10)
	var sent, paced int64
	paceStart := time.Now()
	for {
		n, err := server.Read(buf)
		if n > 0 {
			if faults && p.cfg.Latency > 0 {
				time.Sleep(time.Duration(p.float() * float64(p.cfg.Latency)))
			}
			if requested.Swap(false) { // a response begins
				if p.cfg.FirstByte > 0 {
					time.Sleep(p.cfg.FirstByte)
				}
				// The bandwidth is paced from each response's first byte: a connection reused after
				// a pause must not send its next answer at full speed until it has caught up with
				// the time it sat idle.
				paceStart, paced = time.Now(), 0
			}
			if p.cfg.Bandwidth > 0 { // pace: the bytes so far may not run ahead of the bandwidth
				paced += int64(n)
				if ahead := time.Duration(float64(paced)/float64(p.cfg.Bandwidth)*float64(time.Second)) - time.Since(paceStart); ahead > 0 {
					time.Sleep(ahead)
				}
			}
			chunk := buf[:n]
			if stallAt >= 0 && sent+int64(n) > stallAt {
				client.Write(chunk[:stallAt-sent])
				p.stalls.Add(1)
				<-done // silent from now on, until the client gives up and closes
				end(false)
				return
			}
			if at := p.cutMark(int64(n)); at >= 0 && (cutAfter < 0 || sent+at < cutAfter) {
				cutAfter = sent + at
			}
			if cutAfter >= 0 && sent+int64(n) > cutAfter {
				client.Write(chunk[:cutAfter-sent])
				p.cuts.Add(1)
				end(true)
				break
			}
			if _, werr := client.Write(chunk); werr != nil {
				end(false)
				break
			}
			sent += int64(n)
		}
		if err != nil {
			end(false)
			break
		}
	}
	<-done
}

// noting is the request direction's reader: it marks that a request is on its way.
type noting struct {
	r    io.Reader
	flag *atomic.Bool
}

func (n *noting) Read(p []byte) (int, error) {
	k, err := n.r.Read(p)
	if k > 0 {
		n.flag.Store(true)
	}
	return k, err
}
