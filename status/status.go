// Package status keeps what Palleto's status page shows and serves it: the page at / (HTML and
// a little JavaScript compiled into the binary, no CDN, no build step) and /status.json, whose
// field names are a contract (added to, never renamed; DESIGN.md, "Seeing it").
//
// A Tracker is told about objects in flight, failures and dependencies by the daemon's metrics
// (metrics.Metrics.SetStatus); counts, rates and history come from counters it reads every Step.
// Nothing is computed per object beyond a few assignments under a mutex, so the page costs
// nothing measurable while nobody looks. No secret reaches it: URLs are shown without
// credentials, and URLs inside error texts are redacted too.
package status

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/palleto/palleto/queue"
)

// Status is the document /status.json serves. Field names are a contract: added, never renamed.
type Status struct {
	Version       string    `json:"version"`
	Inflate       string    `json:"inflate"`
	Source        string    `json:"source"` // credentials removed
	Store         string    `json:"store"`  // credentials removed
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Counts        Counts    `json:"counts"`
	Rate          Rate      `json:"rate"`
	// History holds one point per Step (10 s) of the last 15 minutes, oldest first.
	History      []Point      `json:"history"`
	InFlight     []Object     `json:"in_flight"` // by worker
	Queue        Queue        `json:"queue"`
	Dependencies []Dependency `json:"dependencies"`
	// Failures are the last 50, newest first: the object's own (class permanent or retryable)
	// and the world's (class unavailable).
	Failures []Failure `json:"failures"`
}

// Counts are counted since the daemon started.
type Counts struct {
	Received     int64 `json:"received"`      // messages received
	Done         int64 `json:"done"`          // objects processed and handed to the store
	AlreadyDone  int64 `json:"already_done"`  // objects skipped: their result was there
	Failed       int64 `json:"failed"`        // failures recorded (the object's own)
	Retried      int64 `json:"retried"`       // messages handed back to be tried again
	DeadLettered int64 `json:"dead_lettered"` // messages sent to the dead-letter queue
	Skipped      int64 `json:"skipped"`       // records that are not ObjectCreated, test events, filtered keys
	Bytes        int64 `json:"bytes"`         // bytes decompressed from the objects done
}

// Rate is over the last minute (or since the start, when that is shorter).
type Rate struct {
	ObjectsPerSecond float64 `json:"objects_per_second"`
	BytesPerSecond   float64 `json:"bytes_per_second"` // decompressed
}

// Point is what was done in one Step ending at At.
type Point struct {
	At      time.Time `json:"at"`
	Objects int64     `json:"objects"`
	Bytes   int64     `json:"bytes"`
}

// Object is an object in flight on a worker.
type Object struct {
	Bucket    string    `json:"bucket"`
	Key       string    `json:"key"`
	Worker    int       `json:"worker"`
	BytesRead int64     `json:"bytes_read"` // as stored (compressed), read from S3 so far
	Size      int64     `json:"size"`       // as stored; 0 when not known yet
	StartedAt time.Time `json:"started_at"`
}

// Queue is what the source says of its queue; a field is null where the source cannot tell.
type Queue struct {
	Visible  *int64 `json:"visible"`   // messages waiting
	InFlight *int64 `json:"in_flight"` // messages held by consumers (this one and others)
	// OldestAgeSeconds is the longest a message received in the last minute had waited in the
	// queue (from its sent time): the age of the queue's oldest message, as this consumer sees it.
	OldestAgeSeconds *float64 `json:"oldest_age_seconds"`
}

// Dependency is the state of one thing the daemon needs (S3, the results store, the source).
type Dependency struct {
	Name   string    `json:"name"`
	Up     bool      `json:"up"`
	Since  time.Time `json:"since"`
	Reason string    `json:"reason"` // why it is down; empty while up
}

// Failure is one failed object (or message: Bucket and Key empty).
type Failure struct {
	At     time.Time `json:"at"`
	Bucket string    `json:"bucket"`
	Key    string    `json:"key"`
	Class  string    `json:"class"`  // permanent, retryable (the object's own), unavailable (the world's)
	Error  string    `json:"error"`  // secrets removed
	Action string    `json:"action"` // what was done: "retry in 20s", "dead-lettered", "deleted", "kept: ..."
}

// Config is what a Tracker shows besides what it is told.
type Config struct {
	Version, Inflate string
	// Source and Store are shown with credentials removed.
	Source, Store string
	// Dependencies are shown up from the start until told otherwise.
	Dependencies []string
	// Counts returns the counts since start; required. It is called every Step and for every
	// snapshot, so it must be cheap (atomic loads).
	Counts func() Counts
	// Depth, when set, asks the source for its queue's depth, every Step, within 5 seconds.
	Depth func(ctx context.Context) (visible, inFlight int, err error)
	// OldestAge, when set, is the longest queue wait of the messages received in the last
	// minute; ok is false when the source does not tell when a message was sent.
	OldestAge func() (age time.Duration, ok bool)
	// Step is the history's step (default 10s); History covers 15 minutes of them.
	Step time.Duration
}

const (
	maxFailures = 50
	historyLen  = 15 * 60 / 10 // points of the default step
	maxError    = 2000         // bytes of an error text kept
)

// Tracker keeps the status. Safe for concurrent use.
type Tracker struct {
	cfg     Config
	started time.Time
	now     func() time.Time // the clock (tests set it)

	mu       sync.Mutex
	slots    []*slot // by worker-1 (workers are numbered from 1), grown on first use
	failures [maxFailures]Failure
	nfail    int // failures ever told; the newest is failures[(nfail-1)%maxFailures]
	deps     []Dependency
	samples  []sample // cumulative counts, one per Step, the last minute and a bit
	history  []Point  // the last historyLen points
	queue    Queue
}

type slot struct {
	busy        bool
	bucket, key string
	size        int64
	started     time.Time
	read        atomic.Int64 // updated by the reader without the lock
}

type sample struct {
	at             time.Time
	objects, bytes int64
}

// New returns a Tracker; call Start to sample its counters.
func New(cfg Config) *Tracker {
	if cfg.Step <= 0 {
		cfg.Step = 10 * time.Second
	}
	if cfg.Counts == nil {
		cfg.Counts = func() Counts { return Counts{} }
	}
	t := &Tracker{cfg: cfg, started: time.Now(), now: time.Now}
	t.cfg.Source, t.cfg.Store = redactURL(cfg.Source), redactURL(cfg.Store)
	for _, name := range cfg.Dependencies {
		t.deps = append(t.deps, Dependency{Name: name, Up: true, Since: t.started})
	}
	c := cfg.Counts()
	t.samples = []sample{{at: t.started, objects: c.Done, bytes: c.Bytes}}
	return t
}

// ObjectBegan says worker (numbered from 1) started on an object of size bytes (0: unknown).
func (t *Tracker) ObjectBegan(worker int, bucket, key string, size int64) {
	if worker < 1 {
		return
	}
	t.mu.Lock()
	for len(t.slots) < worker {
		t.slots = append(t.slots, &slot{})
	}
	s := t.slots[worker-1]
	s.busy, s.bucket, s.key, s.size, s.started = true, bucket, key, size, t.now()
	s.read.Store(0)
	t.mu.Unlock()
}

// ObjectReading says the object of worker is being read and is size bytes (<= 0: keep what
// ObjectBegan said). The reader stores its count of bytes read in the counter returned, which
// stays valid for the tracker's life; nil for a worker that began no object.
func (t *Tracker) ObjectReading(worker int, size int64) *atomic.Int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if worker < 1 || worker > len(t.slots) {
		return nil
	}
	s := t.slots[worker-1]
	if size > 0 {
		s.size = size
	}
	return &s.read
}

// ObjectEnded says worker has no object in flight.
func (t *Tracker) ObjectEnded(worker int) {
	t.mu.Lock()
	if worker >= 1 && worker <= len(t.slots) {
		t.slots[worker-1].busy = false
	}
	t.mu.Unlock()
}

// Failure records a failed object (bucket and key empty: a message); the last 50 are kept.
func (t *Tracker) Failure(bucket, key, class, err, action string) {
	f := Failure{At: t.now().UTC(), Bucket: bucket, Key: key, Class: class, Error: Redact(err), Action: action}
	t.mu.Lock()
	t.failures[t.nfail%maxFailures] = f
	t.nfail++
	t.mu.Unlock()
}

// DependencyChanged says dependency name went down (up false, with the reason) or came back.
func (t *Tracker) DependencyChanged(name string, up bool, reason string) {
	d := Dependency{Name: name, Up: up, Since: t.now().UTC()}
	if !up {
		d.Reason = Redact(reason)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if i := slices.IndexFunc(t.deps, func(x Dependency) bool { return x.Name == name }); i >= 0 {
		t.deps[i] = d
		return
	}
	t.deps = append(t.deps, d)
}

// Snapshot returns the status now.
func (t *Tracker) Snapshot() Status {
	now := t.now()
	c := t.cfg.Counts()
	s := Status{Version: t.cfg.Version, Inflate: t.cfg.Inflate, Source: t.cfg.Source, Store: t.cfg.Store,
		StartedAt: t.started.UTC(), UptimeSeconds: now.Sub(t.started).Seconds(), Counts: c,
		InFlight: []Object{}, Failures: []Failure{}}
	t.mu.Lock()
	for i, sl := range t.slots {
		if sl.busy {
			s.InFlight = append(s.InFlight, Object{Bucket: sl.bucket, Key: sl.key, Worker: i + 1, BytesRead: sl.read.Load(), Size: sl.size, StartedAt: sl.started.UTC()})
		}
	}
	for i := 1; i <= min(t.nfail, maxFailures); i++ {
		s.Failures = append(s.Failures, t.failures[(t.nfail-i)%maxFailures])
	}
	s.Dependencies = slices.Clone(t.deps)
	s.History = slices.Clone(t.history)
	s.Queue = t.queue
	// The rate is over the oldest sample of the last minute up to now.
	from := t.samples[0]
	for _, sm := range t.samples {
		if now.Sub(sm.at) <= time.Minute+t.cfg.Step/2 {
			from = sm
			break
		}
	}
	t.mu.Unlock()
	if secs := now.Sub(from.at).Seconds(); secs > 0.5 {
		s.Rate = Rate{ObjectsPerSecond: float64(c.Done-from.objects) / secs, BytesPerSecond: float64(c.Bytes-from.bytes) / secs}
	}
	if s.Dependencies == nil {
		s.Dependencies = []Dependency{}
	}
	if s.History == nil {
		s.History = []Point{}
	}
	if t.cfg.OldestAge != nil {
		if age, ok := t.cfg.OldestAge(); ok {
			v := age.Seconds()
			s.Queue.OldestAgeSeconds = &v
		}
	}
	return s
}

// Start samples the counters (and asks the queue's depth) every Step until ctx is done or the
// returned stop is called; stop waits for the sampler to end.
func (t *Tracker) Start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.depth(ctx)
		tick := time.NewTicker(t.cfg.Step)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				t.sample(now)
				t.depth(ctx)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// sample takes the counters at now: a history point and a sample for the rate.
func (t *Tracker) sample(now time.Time) {
	c := t.cfg.Counts()
	t.mu.Lock()
	defer t.mu.Unlock()
	last := t.samples[len(t.samples)-1]
	t.history = append(t.history, Point{At: now.UTC(), Objects: c.Done - last.objects, Bytes: c.Bytes - last.bytes})
	if n := 15 * time.Minute / t.cfg.Step; len(t.history) > int(n) {
		t.history = slices.Delete(t.history, 0, len(t.history)-int(n))
	}
	t.samples = append(t.samples, sample{at: now, objects: c.Done, bytes: c.Bytes})
	if n := int(time.Minute/t.cfg.Step) + 2; len(t.samples) > n {
		t.samples = slices.Delete(t.samples, 0, len(t.samples)-n)
	}
}

func (t *Tracker) depth(ctx context.Context) {
	if t.cfg.Depth == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, f, err := t.cfg.Depth(ctx)
	if err != nil { // the last answer stays; the source's own outage shows in Dependencies
		return
	}
	visible, inFlight := int64(v), int64(f)
	t.mu.Lock()
	t.queue.Visible, t.queue.InFlight = &visible, &inFlight
	t.mu.Unlock()
}

// urlInText finds URLs inside error texts.
var urlInText = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>]+`)

// Redact returns an error text with every URL in it stripped of credentials (a password,
// tokens and signatures in the query; queue.Redact), cut to 2000 bytes.
func Redact(s string) string {
	s = urlInText.ReplaceAllStringFunc(s, queue.Redact)
	if len(s) > maxError {
		s = strings.ToValidUTF8(s[:maxError], "") + "..."
	}
	return s
}

// redactURL is Redact for a setting that is a URL or a path.
func redactURL(s string) string {
	if strings.Contains(s, "://") {
		return queue.Redact(s)
	}
	return s
}
