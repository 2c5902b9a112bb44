// Package metrics holds Palleto's Prometheus metrics, named for events as Filebeat names its
// aws-s3 input's, and the HTTP endpoints an operator scrapes and probes: /metrics, /healthz,
// /readyz.
//
// A nil *Metrics is valid and records nothing, so components take one without caring whether
// metrics are on.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Outcomes of an object, the values of palleto_objects_processed_total{outcome}.
const (
	OutcomeOK          = "ok"
	OutcomeAlreadyDone = "already_done"
	OutcomeFiltered    = "filtered"
	OutcomePermanent   = "permanent"
	OutcomeRetryable   = "retryable"
	// OutcomeUnavailable: S3 or the store was unavailable (or a shutdown cut the work); the
	// message comes back, and nothing counts against the object.
	OutcomeUnavailable = "unavailable"
)

// Metrics are the daemon's counters, gauges and histograms. Safe for concurrent use.
type Metrics struct {
	reg prometheus.Gatherer

	received, deleted, deadLettered, extensions prometheus.Counter
	resumes                                     prometheus.Counter
	returned                                    *prometheus.CounterVec
	receives                                    *prometheus.CounterVec
	objects                                     *prometheus.CounterVec
	s3Bytes, decompressed                       prometheus.Counter
	messagesInFlight, objectsInFlight           prometheus.Gauge
	duration, lag                               prometheus.Histogram
	dependencyUp                                *prometheus.GaugeVec
	commitResults, commitSeconds                prometheus.Histogram
	commitFailures                              prometheus.Counter
	rangeBytes                                  prometheus.Histogram
	readAhead                                   atomic.Pointer[func() int64]
	demand                                      atomic.Pointer[func() int]
	seeing                                      // the status page's and the dashboard's (seeing.go)
	// Outcomes as the daemon decides them, for every source (label source: sqs, nats, ...).
	srcReceived, srcDeleted, srcRetried, srcReleased, srcDeadLettered *prometheus.CounterVec
	skipped                                                           *prometheus.CounterVec
}

// New registers Palleto's metrics, plus the Go runtime and process collectors, on a new registry.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{reg: reg}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		reg.MustRegister(c)
		return c
	}
	vec := func(name, help, label string, values ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label})
		for _, v := range values { // present at 0 from the start, so rate() and alerts work at once
			c.WithLabelValues(v)
		}
		reg.MustRegister(c)
		return c
	}
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		reg.MustRegister(g)
		return g
	}
	m.received = counter("palleto_sqs_messages_received_total", "SQS messages received.")
	m.deleted = counter("palleto_sqs_messages_deleted_total", "SQS messages deleted: every object done, or failed permanently and recorded.")
	m.deadLettered = counter("palleto_sqs_messages_dead_lettered_total", "SQS messages sent to the --dlq-url queue.")
	m.extensions = counter("palleto_sqs_visibility_extensions_total", "Visibility timeouts extended for in-flight messages.")
	m.returned = vec("palleto_sqs_messages_returned_total", "SQS messages handed back to the queue, by reason: retry (after a backoff) or shutdown (visible at once).", "reason", "retry", "shutdown")
	m.receives = vec("palleto_sqs_receive_requests_total", "ReceiveMessage calls, by result: messages, empty, error.", "result", "messages", "empty", "error")
	m.objects = vec("palleto_objects_processed_total", "Objects, by outcome: ok, already_done, filtered, permanent, retryable, unavailable.", "outcome",
		OutcomeOK, OutcomeAlreadyDone, OutcomeFiltered, OutcomePermanent, OutcomeRetryable, OutcomeUnavailable)
	m.dependencyUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "palleto_dependency_up",
		Help: "1 while a dependency works, 0 while the circuit breaker holds it down: results_store (receiving paused), s3 (any bucket: that bucket's messages wait; receiving pauses only when every bucket is down); and the source (sqs, ...): 0 while its receives fail."}, []string{"dependency"})
	for _, d := range []string{"s3", "results_store"} {
		m.dependencyUp.WithLabelValues(d).Set(1)
	}
	reg.MustRegister(m.dependencyUp)
	m.commitResults = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "palleto_store_commit_results",
		Help: "Results per grouped commit of a database store.", Buckets: prometheus.ExponentialBuckets(1, 2, 12)})
	m.commitSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "palleto_store_commit_seconds",
		Help: "Time of one grouped commit of a database store.", Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 10)})
	m.commitFailures = counter("palleto_store_commit_failures_total", "Grouped commits that failed (and were tried again).")
	reg.MustRegister(m.commitResults, m.commitSeconds)
	m.rangeBytes = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "palleto_s3_range_bytes",
		Help: "Ranged GETs of big objects, by size (its count: palleto_s3_range_bytes_count).", Buckets: prometheus.ExponentialBuckets(64<<10, 2, 10)})
	reg.MustRegister(m.rangeBytes)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "palleto_s3_read_ahead_bytes",
		Help: "Bytes of the --read-ahead budget held by ranges read ahead of the decompressors."}, func() float64 {
		if f := m.readAhead.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	}))
	m.resumes = counter("palleto_s3_resumes_total", "Broken S3 bodies continued with a Range request.")
	m.s3Bytes = counter("palleto_s3_bytes_total", "Bytes fetched from S3 (as stored, before decompression).")
	m.decompressed = counter("palleto_decompressed_bytes_total", "Bytes after decompression, fed to the processor.")
	m.messagesInFlight = gauge("palleto_messages_in_flight", "SQS messages being handled now.")
	m.objectsInFlight = gauge("palleto_objects_in_flight", "Objects being downloaded and processed now.")
	m.duration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "palleto_object_duration_seconds",
		Help: "Time to fetch, decompress, process and store one object.", Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12)})
	m.lag = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "palleto_notification_lag_seconds",
		Help: "Time from the S3 event to the start of the object's processing.", Buckets: prometheus.ExponentialBuckets(0.05, 2.5, 12)})
	reg.MustRegister(m.duration, m.lag)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "palleto_demand_outstanding",
		Help: "Messages the workers have asked for and not yet received."}, func() float64 {
		if f := m.demand.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	}))
	source := func(what, help string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "palleto_source_messages_" + what + "_total", Help: help}, []string{"source"})
		reg.MustRegister(c)
		return c
	}
	m.srcReceived = source("received", "Messages received, by source (sqs, nats, webhook, ...).")
	m.srcDeleted = source("deleted", "Messages the daemon acknowledged for good (every object done, or failed permanently and recorded), by source.")
	m.srcRetried = source("retried", "Messages put back to come again after a delay (a failure of the world, or a retryable one of their own), by source.")
	m.srcReleased = source("released", "Messages handed back at once, never started or cut by a shutdown, by source.")
	m.srcDeadLettered = source("dead_lettered", "Messages sent to the dead-letter destination, by source.")
	m.skipped = vec("palleto_objects_skipped_total", "Objects of events not acted on, by reason: own_output (written by Palleto's own results store), filtered (--include/--exclude).", "reason", "own_output", "filtered")
	m.registerSeeing(reg)
	return m
}

// SetDemand makes palleto_demand_outstanding read f at scrape time.
func (m *Metrics) SetDemand(f func() int) {
	if m != nil {
		m.demand.Store(&f)
	}
}

// Received counts n messages received by one ReceiveMessage call (0: an empty poll).
func (m *Metrics) Received(n int, err error) {
	if m == nil {
		return
	}
	switch {
	case err != nil:
		m.receives.WithLabelValues("error").Inc()
	case n == 0:
		m.receives.WithLabelValues("empty").Inc()
	default:
		m.receives.WithLabelValues("messages").Inc()
		m.received.Add(float64(n))
	}
}

// Deleted counts n messages deleted.
func (m *Metrics) Deleted(n int) {
	if m != nil {
		m.deleted.Add(float64(n))
	}
}

// DeadLettered counts a message sent to the DLQ.
func (m *Metrics) DeadLettered() {
	if m != nil {
		m.deadLettered.Inc()
	}
}

// Extended counts n visibility extensions.
func (m *Metrics) Extended(n int) {
	if m != nil {
		m.extensions.Add(float64(n))
	}
}

// DependencyDown records that the breaker opened (down) or closed a dependency ("S3", "results
// store"), or that the source's receives fail or work again.
func (m *Metrics) DependencyDown(dep string, down bool) {
	if m == nil {
		return
	}
	v := 1.0
	if down {
		v = 0
	}
	m.dependencyUp.WithLabelValues(strings.ReplaceAll(strings.ToLower(dep), " ", "_")).Set(v)
}

// SetReadAhead makes palleto_s3_read_ahead_bytes read f at scrape time.
func (m *Metrics) SetReadAhead(f func() int64) {
	if m != nil {
		m.readAhead.Store(&f)
	}
}

// Range records one ranged GET of n bytes.
func (m *Metrics) Range(n int64) {
	if m != nil {
		m.rangeBytes.Observe(float64(n))
	}
}

// Committed records one grouped commit of a database store: its size, its time, its error.
func (m *Metrics) Committed(n int, took time.Duration, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.commitFailures.Inc()
		return
	}
	m.commitResults.Observe(float64(n))
	m.commitSeconds.Observe(took.Seconds())
}

// Resumed counts a broken S3 body continued with a Range request.
func (m *Metrics) Resumed() {
	if m != nil {
		m.resumes.Inc()
	}
}

// Returned counts n messages handed back, for reason "retry" or "shutdown".
func (m *Metrics) Returned(reason string, n int) {
	if m != nil {
		m.returned.WithLabelValues(reason).Add(float64(n))
	}
}

// MessageStarted and MessageDone track messages in flight.
func (m *Metrics) MessageStarted() {
	if m != nil {
		m.messagesInFlight.Inc()
	}
}

func (m *Metrics) MessageDone() {
	if m != nil {
		m.messagesInFlight.Dec()
	}
}

// ObjectStarted tracks an object in flight, observes its notification lag (when the event time
// is known) and returns the function that records its outcome and duration.
func (m *Metrics) ObjectStarted(eventTime time.Time) (done func(outcome string, fetched, decompressed int64)) {
	if m == nil {
		return func(string, int64, int64) {}
	}
	start := time.Now()
	if !eventTime.IsZero() {
		m.lag.Observe(max(start.Sub(eventTime).Seconds(), 0))
	}
	m.objectsInFlight.Inc()
	return func(outcome string, fetched, decompressed int64) {
		m.objectsInFlight.Dec()
		m.objects.WithLabelValues(outcome).Inc()
		m.duration.Observe(time.Since(start).Seconds())
		if outcome == OutcomeOK && !eventTime.IsZero() {
			m.resultLag.Observe(max(time.Since(eventTime).Seconds(), 0))
		}
		m.s3Bytes.Add(float64(fetched))
		m.decompressed.Add(float64(decompressed))
	}
}

// Handler serves /metrics, /healthz (the process answers) and /readyz (ready returns nil: SQS
// reachable, output directory writable; the error is the body of the 503).
func (m *Metrics) Handler(ready func(context.Context) error) http.Handler {
	mux := http.NewServeMux()
	if m != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
		if m.status != nil { // the status page at / and /status.json (SetStatus)
			mux.Handle("/", m.status)
		}
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if ready != nil {
			if err := ready(ctx); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// Serve listens on addr and serves h until ctx is done. It returns once the listener is open
// (so a port in use is reported at start) with a function that waits for the server to stop.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (wait func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics-addr %q: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "error", err)
		}
	}()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
		case <-done:
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		<-done
	}()
	log.Info("metrics and health endpoints listening", "addr", ln.Addr().String(), "paths", "/metrics /healthz /readyz, and the status page / /status.json when on")
	return func() { <-stopped }, nil
}

// InitSource makes the palleto_source_messages_*_total series of source present at 0, so rate()
// and alerts work from the start.
func (m *Metrics) InitSource(source string) {
	if m == nil {
		return
	}
	for _, c := range []*prometheus.CounterVec{m.srcReceived, m.srcDeleted, m.srcRetried, m.srcReleased, m.srcDeadLettered} {
		c.WithLabelValues(source)
	}
}

// SourceReceived counts n messages received from source.
func (m *Metrics) SourceReceived(source string, n int) {
	if m != nil {
		m.srcReceived.WithLabelValues(source).Add(float64(n))
	}
}

// SourceDeleted counts n messages of source the daemon acknowledged for good.
func (m *Metrics) SourceDeleted(source string, n int) {
	if m != nil {
		m.srcDeleted.WithLabelValues(source).Add(float64(n))
	}
}

// SourceRetried counts a message of source put back to come again after a delay.
func (m *Metrics) SourceRetried(source string) {
	if m != nil {
		m.srcRetried.WithLabelValues(source).Inc()
	}
}

// SourceReleased counts n messages of source handed back at once.
func (m *Metrics) SourceReleased(source string, n int) {
	if m != nil {
		m.srcReleased.WithLabelValues(source).Add(float64(n))
	}
}

// SourceDeadLettered counts a message of source sent to its dead-letter destination.
func (m *Metrics) SourceDeadLettered(source string) {
	if m != nil {
		m.srcDeadLettered.WithLabelValues(source).Inc()
	}
}

// Skipped counts an object not acted on, for reason "own_output" or "filtered".
func (m *Metrics) Skipped(reason string) {
	if m != nil {
		m.skipped.WithLabelValues(reason).Inc()
	}
}
