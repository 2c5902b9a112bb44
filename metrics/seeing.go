package metrics

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Status is told, beside the metrics, what a status page (package status) shows that counters
// cannot: the objects in flight on each worker and how far they are read, the last failures,
// and why a dependency is down; it serves that page at / (and /status.json). Its methods are
// called on the daemon's hot path: they must not block, nor allocate per object.
type Status interface {
	http.Handler
	// ObjectBegan: worker (numbered from 1) started on an object (size 0: not known yet).
	ObjectBegan(worker int, bucket, key string, size int64)
	// ObjectReading returns the counter the worker's reader stores its bytes read in (nil:
	// none), and says the object's size.
	ObjectReading(worker int, size int64) *atomic.Int64
	// ObjectEnded: worker is done with its object.
	ObjectEnded(worker int)
	// Failure: an object (or a message, bucket and key empty) failed, of class, and action is
	// what was done about it.
	Failure(bucket, key, class, err, action string)
	// DependencyChanged: a dependency went down (with why) or came back.
	DependencyChanged(name string, up bool, reason string)
}

// seeing holds what the status page and the dashboard need beyond the metrics of New.
type seeing struct {
	status        Status // set before the daemon runs (SetStatus); nil: no status page
	queueMessages *prometheus.GaugeVec
	getSeconds    prometheus.Histogram
	resultLag     prometheus.Histogram
	waits         waitWindow
}

func (m *Metrics) registerSeeing(reg *prometheus.Registry) {
	m.queueMessages = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "palleto_queue_messages",
		Help: "Messages in the source's queue as it last said (asked every 10 s where the source can tell): visible (waiting) and in_flight (held by consumers, this one and others)."}, []string{"state"})
	m.getSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "palleto_s3_get_seconds",
		Help: "Time S3 took to answer a GET (its headers), ranged GETs and resumes included; failed GETs are not observed.", Buckets: prometheus.ExponentialBuckets(0.002, 2.5, 12)})
	m.resultLag = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "palleto_result_lag_seconds",
		Help: "Time from the S3 event to the object's result handed to the store (outcome ok).", Buckets: prometheus.ExponentialBuckets(0.05, 2.5, 12)})
	reg.MustRegister(m.queueMessages, m.getSeconds, m.resultLag)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "palleto_queue_oldest_message_age_seconds",
		Help: "The longest a message received in the last minute had waited in the queue, from its sent time (0: none received; sources that tell when a message was sent): the age of the queue's oldest message as this consumer sees it."}, func() float64 {
		age, _ := m.OldestWait()
		return age.Seconds()
	}))
}

// SetStatus makes m tell s what happens, and serve s at / beside /metrics. Call it before the
// daemon runs.
func (m *Metrics) SetStatus(s Status) {
	if m != nil {
		m.status = s
	}
}

// Working says worker (numbered from 1) started on an object.
func (m *Metrics) Working(worker int, bucket, key string, size int64) {
	if m != nil && m.status != nil {
		m.status.ObjectBegan(worker, bucket, key, size)
	}
}

// Reading returns the counter the worker's reader keeps its bytes read in, for the status
// page; nil without one.
func (m *Metrics) Reading(worker int, size int64) *atomic.Int64 {
	if m != nil && m.status != nil {
		return m.status.ObjectReading(worker, size)
	}
	return nil
}

// Idle says worker has no object in flight.
func (m *Metrics) Idle(worker int) {
	if m != nil && m.status != nil {
		m.status.ObjectEnded(worker)
	}
}

// Failure tells the status page of a failed object and what was done about it.
func (m *Metrics) Failure(bucket, key, class, err, action string) {
	if m != nil && m.status != nil {
		m.status.Failure(bucket, key, class, err, action)
	}
}

// DependencyChanged is DependencyDown with the reason, which the status page shows.
func (m *Metrics) DependencyChanged(dep string, down bool, reason error) {
	if m == nil {
		return
	}
	m.DependencyDown(dep, down)
	m.DependencyStatus(dep, !down, reason)
}

// DependencyStatus tells the status page only that name is up or down (with why): the breaker
// keys S3 per bucket, while palleto_dependency_up keeps one series per kind of dependency.
func (m *Metrics) DependencyStatus(name string, up bool, reason error) {
	down := !up
	dep := name
	if m != nil && m.status != nil {
		why := ""
		if reason != nil {
			why = reason.Error()
		} else if down {
			why = "unknown"
		}
		m.status.DependencyChanged(dep, !down, why)
	}
}

// QueueDepth sets palleto_queue_messages from what the source said.
func (m *Metrics) QueueDepth(visible, inFlight int) {
	if m != nil {
		m.queueMessages.WithLabelValues("visible").Set(float64(visible))
		m.queueMessages.WithLabelValues("in_flight").Set(float64(inFlight))
	}
}

// GetAnswered observes how long S3 took to answer a GET that worked.
func (m *Metrics) GetAnswered(took time.Duration, err error) {
	if m != nil && err == nil {
		m.getSeconds.Observe(took.Seconds())
	}
}

// MessageWaited notes how long a message waited in the queue: from sent (zero: the source does
// not tell) to received.
func (m *Metrics) MessageWaited(sent, received time.Time) {
	if m != nil && !sent.IsZero() && !received.IsZero() {
		m.waits.add(received, received.Sub(sent))
	}
}

// OldestWait is the longest wait of the messages received in the last minute; ok is false
// while no message has told its sent time.
func (m *Metrics) OldestWait() (age time.Duration, ok bool) {
	if m == nil {
		return 0, false
	}
	return m.waits.max(time.Now())
}

// Counts are the counters the status page shows that the daemon's own Stats do not have.
type Counts struct {
	Received, Retried, DeadLettered int64
}

// Counts reads them.
func (m *Metrics) Counts() Counts {
	if m == nil {
		return Counts{}
	}
	return Counts{Received: value(m.received), Retried: value(m.returned.WithLabelValues("retry")), DeadLettered: value(m.deadLettered)}
}

func value(c prometheus.Counter) int64 {
	var d dto.Metric
	if c.Write(&d) != nil {
		return 0
	}
	return int64(d.GetCounter().GetValue())
}

// waitWindow keeps the longest queue wait of the messages received in each of the last six
// 10-second steps.
type waitWindow struct {
	mu    sync.Mutex
	told  bool
	steps [6]struct{ step, max int64 }
}

func (w *waitWindow) add(at time.Time, wait time.Duration) {
	step := at.Unix() / 10
	w.mu.Lock()
	defer w.mu.Unlock()
	w.told = true
	s := &w.steps[step%int64(len(w.steps))]
	if s.step != step {
		s.step, s.max = step, 0
	}
	s.max = max(s.max, int64(wait))
}

func (w *waitWindow) max(now time.Time) (time.Duration, bool) {
	step := now.Unix() / 10
	w.mu.Lock()
	defer w.mu.Unlock()
	var m int64
	for _, s := range w.steps {
		if s.step > step-int64(len(w.steps)) && s.step <= step {
			m = max(m, s.max)
		}
	}
	return time.Duration(m), w.told
}
