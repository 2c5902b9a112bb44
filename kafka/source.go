package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/palleto/palleto/queue"
)

func init() { queue.Register("kafka", "kafka", nil, open) }

// Headers of a dead letter.
const (
	HeaderError        = "x-palleto-error"
	HeaderClass        = "x-palleto-class"
	HeaderAttempts     = "x-palleto-attempts"
	HeaderReceiveCount = "x-palleto-receive-count"
	HeaderOrigin       = "x-palleto-origin" // topic/partition/offset of the record
)

// Source consumes one topic as a member of a consumer group. Every method is safe for
// concurrent use.
type Source struct {
	cl          *kgo.Client
	cfg         config
	log         *slog.Logger
	waitTime    time.Duration
	callTimeout time.Duration

	mu       sync.Mutex
	parts    map[partition]*partState // the partitions this member owns now
	gen      uint64                   // counts assignments: a record of an older one is not ours to settle
	ready    []*record                // released records, and retried ones whose delay passed: handed out first
	deferred []*record                // retried records waiting for their delay, by due time
	lastErr  error                    // the last fetch error, until a fetch works
	closed   bool

	commitKick chan struct{} // buffered 1: a settle that made an offset committable wakes the committer
	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

type partition struct {
	topic string
	part  int32
}

// partState is what this member knows of one partition it owns: the offsets handed out (in
// order) and not yet settled, and the offset to commit.
type partState struct {
	gen       uint64
	pending   []int64 // received and not settled, ascending
	settled   map[int64]bool
	next      int64 // the offset to commit: every record before it is settled
	committed int64
	paused    bool // fetching paused: maxPending records wait behind an unsettled one
}

// maxPending is the most records of one partition received and not committable (an unsettled
// record before them) before the partition's fetching pauses: about 50 bytes each.
var maxPending = 100_000

type record struct {
	r       *kgo.Record
	p       partition
	gen     uint64
	due     time.Time
	settled bool // guarded by Source.mu
	out     bool // handed out and not yet settled, retried or released
	handed  int  // times handed out, guarded by Source.mu: names the delivery a handle is of
}

// delivery is a message's handle: its record, handed out for the n-th time. Only the latest
// delivery of a record may settle it (an ack of an older one is a no-op).
type delivery struct {
	r *record
	n int
}

func open(ctx context.Context, u *url.URL, opts queue.Options) (queue.Source, error) {
	return Open(ctx, u, opts)
}

// Open joins the consumer group of the URL and starts fetching.
func Open(ctx context.Context, u *url.URL, opts queue.Options) (*Source, error) {
	cfg, err := parseURL(u)
	if err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, log: opts.Logger, waitTime: opts.WaitTime, callTimeout: opts.CallTimeout,
		parts: map[partition]*partState{}, commitKick: make(chan struct{}, 1)}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.waitTime <= 0 {
		s.waitTime = 20 * time.Second
	}
	if s.callTimeout <= 0 {
		s.callTimeout = 30 * time.Second
	}
	kopts := append([]kgo.Opt{
		kgo.SeedBrokers(cfg.brokers...),
		kgo.ConsumerGroup(cfg.group),
		kgo.ConsumeTopics(cfg.topic),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DialTimeout(min(s.callTimeout, 10*time.Second)),
		kgo.RetryTimeout(s.callTimeout),
		// Notifications are small: a fetch of 4 MiB (1 MiB per partition, the client's default)
		// holds thousands. The client buffers one fetch at a time and asks for the next only once
		// Receive has taken every record of it, so what it holds ahead of the workers is bounded
		// by these bytes, and nothing more is fetched while the daemon asks for nothing. (Pausing
		// the topic instead would not bound it better, and costs: the client drops what it
		// buffered for a paused topic at the next poll and fetches it again once resumed, so
		// with a backlog most of every fetch was thrown away and polls came back empty.)
		kgo.FetchMaxBytes(4 << 20),
		kgo.MaxConcurrentFetches(1),
		kgo.FetchMaxWait(min(s.waitTime, 5*time.Second)),
		// A member that died without leaving (kill -9) keeps its partitions until its session
		// times out: 10s (Kafka's default is 45s) lets a restarted Palleto take them over soon.
		// The client heartbeats on its own, so a long object does not end the session.
		kgo.SessionTimeout(10 * time.Second),
		kgo.OnPartitionsAssigned(s.assigned),
		kgo.OnPartitionsRevoked(s.revoked),
		kgo.OnPartitionsLost(s.lost),
	}, cfg.opts...)
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	s.cl = cl
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.commitLoop() }()
	return s, nil
}

func (s *Source) assigned(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	for t, ps := range m {
		for _, p := range ps {
			s.parts[partition{t, p}] = &partState{gen: s.gen, settled: map[int64]bool{}, next: -1, committed: -1}
		}
	}
	s.log.Info("kafka partitions assigned", "topic", s.cfg.topic, "group", s.cfg.group, "partitions", fmt.Sprint(m))
}

// revoked commits what is settled of the partitions taken away, then forgets them: their
// records still being worked on are read again by the new owner, which finds them done.
func (s *Source) revoked(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
	s.mu.Lock()
	offsets := s.committableLocked(m)
	s.mu.Unlock()
	if len(offsets) > 0 {
		cctx, cancel := context.WithTimeout(ctx, s.callTimeout)
		cl.CommitOffsetsSync(cctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				s.log.Warn("kafka commit before a rebalance failed; the new owner reads those records again and finds them done", "error", err)
			}
		})
		cancel()
	}
	s.forget(m, "revoked")
}

func (s *Source) lost(_ context.Context, _ *kgo.Client, m map[string][]int32) { s.forget(m, "lost") }

func (s *Source) forget(m map[string][]int32, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, ps := range m {
		for _, p := range ps {
			delete(s.parts, partition{t, p})
		}
	}
	mine := func(r *record) bool { return s.parts[r.p] != nil && s.parts[r.p].gen == r.gen }
	s.ready = slices.DeleteFunc(s.ready, func(r *record) bool { return !mine(r) })
	s.deferred = slices.DeleteFunc(s.deferred, func(r *record) bool { return !mine(r) })
	if len(m) > 0 {
		s.log.Info("kafka partitions "+why+": their unsettled records go to the next owner", "partitions", fmt.Sprint(m))
	}
}

// Receive hands out up to max records: released ones and retried ones whose delay passed
// first, then fetched ones. It waits up to the wait time (less when a retried record falls due
// sooner) for the first.
func (s *Source) Receive(ctx context.Context, n int) ([]*queue.Message, error) {
	out := s.takeReady(n)
	if len(out) > 0 {
		return out, nil
	}
	wait := s.waitTime
	s.mu.Lock()
	if len(s.deferred) > 0 {
		wait = min(wait, max(time.Until(s.deferred[0].due), time.Millisecond))
	}
	s.mu.Unlock()
	pctx, cancel := context.WithTimeout(ctx, wait)
	fetches := s.cl.PollRecords(pctx, n)
	cancel()
	var ferr error
	fetches.EachError(func(t string, p int32, err error) {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return
		}
		ferr = fmt.Errorf("kafka fetch %s[%d]: %w", t, p, err)
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if ferr != nil {
		s.lastErr = ferr
	} else if !fetches.IsClientClosed() {
		s.lastErr = nil
	}
	fetches.EachRecord(func(kr *kgo.Record) {
		p := partition{kr.Topic, kr.Partition}
		ps := s.parts[p]
		if ps == nil { // fetched just before the partition was taken away: the next owner reads it
			return
		}
		ps.pending = append(ps.pending, kr.Offset)
		r := &record{r: kr, p: p, gen: ps.gen, out: true}
		out = append(out, s.message(r))
		if len(ps.pending) >= maxPending && !ps.paused {
			// A record held for a retry keeps every later offset of its partition pending (the
			// commit waits for it): past maxPending the partition is paused, so memory stays
			// bounded whatever the throughput and the delay; it resumes once the held record
			// is settled. The other partitions go on.
			ps.paused = true
			s.cl.PauseFetchPartitions(map[string][]int32{p.topic: {p.part}})
			s.log.Warn("kafka partition paused: a record not yet settled holds its commit back, and too many later ones wait behind it",
				"topic", p.topic, "partition", p.part, "pending", len(ps.pending), "first_pending_offset", ps.pending[0])
		}
	})
	if err := ctx.Err(); err != nil && len(out) == 0 {
		return nil, err
	}
	if len(out) == 0 && ferr != nil {
		return nil, ferr
	}
	return out, nil
}

func (s *Source) takeReady(max int) []*queue.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for len(s.deferred) > 0 && !s.deferred[0].due.After(now) {
		s.ready = append(s.ready, s.deferred[0])
		s.deferred = s.deferred[1:]
	}
	var out []*queue.Message
	for len(s.ready) > 0 && len(out) < max {
		r := s.ready[0]
		s.ready = s.ready[1:]
		r.out = true
		out = append(out, s.message(r))
	}
	return out
}

func (s *Source) message(r *record) *queue.Message {
	r.handed++
	return &queue.Message{ID: fmt.Sprintf("%s/%d/%d", r.p.topic, r.p.part, r.r.Offset), Body: r.r.Value,
		SentAt: r.r.Timestamp, ReceivedAt: time.Now(), Handle: &delivery{r: r, n: r.handed}}
}

// mineLocked returns m's record when m is its latest delivery, handed out and not settled, and its
// partition is still this member's.
func (s *Source) mineLocked(m *queue.Message) (*record, *partState) {
	d, ok := m.Handle.(*delivery)
	if !ok || d.n != d.r.handed || !d.r.out || d.r.settled {
		return nil, nil
	}
	r := d.r
	r.out = false
	ps := s.parts[r.p]
	if ps == nil || ps.gen != r.gen {
		return nil, nil
	}
	return r, ps
}

// Delete settles m: its partition's offset is committed once every record before it is settled.
func (s *Source) Delete(m *queue.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ps := s.mineLocked(m)
	if r == nil {
		return
	}
	r.settled = true
	ps.settled[r.r.Offset] = true
	advanced := false
	for len(ps.pending) > 0 && ps.settled[ps.pending[0]] {
		delete(ps.settled, ps.pending[0])
		ps.next = ps.pending[0] + 1
		ps.pending = ps.pending[1:]
		advanced = true
	}
	if ps.paused && len(ps.pending) < maxPending/2 {
		ps.paused = false
		s.cl.ResumeFetchPartitions(map[string][]int32{r.p.topic: {r.p.part}})
	}
	if advanced {
		select {
		case s.commitKick <- struct{}{}:
		default:
		}
	}
}

// Retry holds m, and its partition's commit, until delay has passed; then it is handed out again.
func (s *Source) Retry(_ context.Context, m *queue.Message, delay time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, _ := s.mineLocked(m)
	if r == nil {
		return nil
	}
	r.due = time.Now().Add(delay)
	i := sort.Search(len(s.deferred), func(i int) bool { return s.deferred[i].due.After(r.due) })
	s.deferred = slices.Insert(s.deferred, i, r)
	return nil
}

// Release hands msgs out again at once, before any record fetched later.
func (s *Source) Release(_ context.Context, msgs []*queue.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var back []*record
	for _, m := range msgs {
		if r, _ := s.mineLocked(m); r != nil {
			back = append(back, r)
		}
	}
	s.ready = append(back, s.ready...)
	return nil
}

// DeadLetter produces m's record, with why in its headers, to the dlq topic. It does not settle m.
func (s *Source) DeadLetter(ctx context.Context, m *queue.Message, why queue.DeadLetter) error {
	if s.cfg.dlq == "" {
		return queue.ErrNoDeadLetterQueue
	}
	rec := &kgo.Record{Topic: s.cfg.dlq, Value: m.Body, Headers: []kgo.RecordHeader{
		{Key: HeaderError, Value: []byte(why.Error)}, {Key: HeaderClass, Value: []byte(why.Class)},
		{Key: HeaderAttempts, Value: []byte(strconv.Itoa(why.Attempts))}, {Key: HeaderReceiveCount, Value: []byte(strconv.Itoa(why.ReceiveCount))},
		{Key: HeaderOrigin, Value: []byte(m.ID)}}}
	if d, ok := m.Handle.(*delivery); ok {
		rec.Key = d.r.r.Key
	}
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	defer cancel()
	if err := s.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("kafka dead-letter %s to %s: %w", m.ID, s.cfg.dlq, err)
	}
	return nil
}

// committableLocked returns the offsets to commit: of the partitions in only (all when nil)
// whose settled offset moved past the last commit.
func (s *Source) committableLocked(only map[string][]int32) map[string]map[int32]kgo.EpochOffset {
	out := map[string]map[int32]kgo.EpochOffset{}
	for p, ps := range s.parts {
		if only != nil && !slices.Contains(only[p.topic], p.part) {
			continue
		}
		if ps.next > ps.committed {
			if out[p.topic] == nil {
				out[p.topic] = map[int32]kgo.EpochOffset{}
			}
			out[p.topic][p.part] = kgo.EpochOffset{Epoch: -1, Offset: ps.next}
		}
	}
	return out
}

// commitLoop commits settled offsets in batches: at most every 200ms, after a settle moved one.
func (s *Source) commitLoop() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.commitKick:
		}
		s.commit(s.ctx)
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *Source) commit(ctx context.Context) {
	s.mu.Lock()
	offsets := s.committableLocked(nil)
	s.mu.Unlock()
	if len(offsets) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	defer cancel()
	var failed error
	s.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			failed = err
			clear(offsets) // nothing of it was committed
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					failed = err
					delete(offsets[t.Topic], p.Partition)
				}
			}
		}
	})
	if failed != nil && !errors.Is(failed, context.Canceled) {
		s.log.Warn("kafka offset commit failed; retried with the next one (records after the last commit come back after a restart and are found done)", "error", failed)
		select { // try again on the next round
		case s.commitKick <- struct{}{}:
		default:
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, ps := range offsets {
		for p, eo := range ps {
			if st := s.parts[partition{t, p}]; st != nil && eo.Offset > st.committed {
				st.committed = eo.Offset
			}
		}
	}
}

// Ready reports why the source cannot deliver: a broker that does not answer, or the last
// fetch's error.
func (s *Source) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, min(s.callTimeout, 10*time.Second))
	defer cancel()
	if err := s.cl.Ping(ctx); err != nil {
		return fmt.Errorf("kafka %v: no broker answers: %w", s.cfg.brokers, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Check makes sure at start that a broker answers and the topic exists.
func (s *Source) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	defer cancel()
	return checkTopic(ctx, s.cl, s.cfg.topic)
}

// checkTopic asks a broker for topic's metadata: an error when none answers or the topic does
// not exist (it is not created by asking).
func checkTopic(ctx context.Context, cl *kgo.Client, topic string) error {
	req := kmsg.NewPtrMetadataRequest()
	req.AllowAutoTopicCreation = false // a misspelt topic is an error, not a new topic
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("kafka: no broker answers: %w", err)
	}
	for _, rt := range resp.Topics {
		if err := kerr.ErrorForCode(rt.ErrorCode); err != nil {
			return fmt.Errorf("kafka topic %q: %w", topic, err)
		}
	}
	return nil
}

// Close commits what is settled, leaves the group and closes the client: records not settled
// are read again by whoever owns their partition next.
func (s *Source) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.commit(context.Background())
	s.cl.Close()
}
