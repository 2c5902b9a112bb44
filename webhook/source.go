package webhook

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/palleto/palleto/queue"
)

// handle is a received message's place in the spool: its row, and the delivery that leased
// it (a change asked for by an older delivery of a row leased again does nothing).
type handle struct {
	id  int64
	gen int
}

func handleOf(m *queue.Message) (handle, bool) {
	h, ok := m.Handle.(handle)
	return h, ok
}

// Receive leases up to max due messages of the spool for AckTimeout, renewed while they are
// held. With none due it waits, at most WaitTime, for a POST to be spooled or a delay to end;
// it returns at once when ctx is done (with ctx's error).
func (s *Source) Receive(ctx context.Context, limit int) ([]*queue.Message, error) {
	if limit < 1 {
		return nil, fmt.Errorf("webhook receive: max %d, want 1 or more", limit)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(s.cfg.WaitTime)
	for {
		wake := s.waiter()
		msgs, next, err := s.lease(ctx, limit)
		if err != nil || len(msgs) > 0 {
			return msgs, err
		}
		now := time.Now()
		wait := deadline.Sub(now)
		if wait <= 0 {
			return nil, nil
		}
		if !next.IsZero() && next.Sub(now) < wait {
			wait = max(next.Sub(now), time.Millisecond) // a lease or a retry delay ends then
		}
		t := time.NewTimer(wait)
		if testHookWaiting != nil {
			testHookWaiting()
		}
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-s.closing:
			t.Stop()
			return nil, errClosed
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// testHookWaiting, when set by a test, is called when a Receive starts to wait.
var testHookWaiting func()

// waiter returns a channel closed at the next change that may make a message due.
func (s *Source) waiter() <-chan struct{} {
	s.wakeMu.Lock()
	defer s.wakeMu.Unlock()
	return s.wake
}

// broadcast wakes every Receive waiting.
func (s *Source) broadcast() {
	s.wakeMu.Lock()
	close(s.wake)
	s.wake = make(chan struct{})
	s.wakeMu.Unlock()
}

// lease takes up to max due messages, and says when the next one not yet due will be.
func (s *Source) lease(ctx context.Context, limit int) (msgs []*queue.Message, next time.Time, err error) {
	var got []*queue.Message
	var nextNanos int64
	o := &op{run: func(g *group) error {
		got, nextNanos = got[:0], 0
		until := g.now.Add(s.cfg.AckTimeout).UnixNano()
		rows, err := g.tx.QueryContext(g.ctx, `UPDATE messages SET not_before = ?, deliveries = deliveries + 1, leased = 1
			WHERE id IN (SELECT id FROM messages WHERE not_before <= ? ORDER BY not_before, id LIMIT ?)
			RETURNING id, body, spooled_at, deliveries`, until, g.now.UnixNano(), limit)
		if err != nil {
			return fmt.Errorf("lease: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var id, spooled int64
			var body []byte
			var n int
			if err := rows.Scan(&id, &body, &spooled, &n); err != nil {
				return fmt.Errorf("lease: %w", err)
			}
			got = append(got, &queue.Message{ID: strconv.FormatInt(id, 10), Body: body, ReceiveCount: n,
				SentAt: time.Unix(0, spooled), ReceivedAt: g.now, Handle: handle{id: id, gen: n}})
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("lease: %w", err)
		}
		rows.Close()
		var nb *int64
		if err := g.tx.QueryRowContext(g.ctx, `SELECT MIN(not_before) FROM messages WHERE not_before > ?`, g.now.UnixNano()).Scan(&nb); err != nil {
			return fmt.Errorf("lease: next due: %w", err)
		}
		if nb != nil {
			nextNanos = *nb
		}
		return nil
	}}
	// Once handed to the writer the lease is waited for whatever ctx says (the spool's deadline
	// bounds it): messages leased and then dropped would wait out their lease.
	if err := s.sp.submit(context.WithoutCancel(ctx), o); err != nil {
		return nil, time.Time{}, err
	}
	if nextNanos != 0 {
		next = time.Unix(0, nextNanos)
	}
	s.held.mu.Lock()
	for _, m := range got {
		h := m.Handle.(handle)
		s.held.m[h.id] = h.gen
	}
	s.held.mu.Unlock()
	if len(got) > 0 {
		s.trace("webhook: leased %d spooled messages", len(got))
	}
	return got, next, nil
}

// untrack stops renewing m's lease. A renewal cannot undo what follows: it renews only a row
// still leased by the same delivery, and Retry, Release and Delete end that.
func (s *Source) untrack(m *queue.Message) (handle, bool) {
	h, ok := handleOf(m)
	if !ok {
		return h, false
	}
	s.held.mu.Lock()
	if s.held.m[h.id] == h.gen {
		delete(s.held.m, h.id)
	}
	s.held.mu.Unlock()
	return h, true
}

// keepAlive renews the leases of the held messages every third of AckTimeout, until ctx ends.
func (s *Source) keepAlive(ctx context.Context) {
	t := time.NewTicker(s.cfg.AckTimeout / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.held.mu.Lock()
		ids := make(map[int64]int, len(s.held.m))
		for id, gen := range s.held.m {
			ids[id] = gen
		}
		s.held.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
		err := s.renew(rctx, ids)
		cancel()
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, errClosed) {
			s.log.Warn("webhook spool: renewing the leases of the messages in progress failed; they may be received again once their lease ends, and are then found done",
				"spool", s.sp.path, "messages", len(ids), "error", err)
		}
	}
}

// renew extends the leases of ids (row ID -> delivery) to AckTimeout from now: only rows still
// leased by that delivery, so a renewal that runs after a retry, a release or a delete of the
// same message changes nothing.
func (s *Source) renew(ctx context.Context, ids map[int64]int) error {
	return s.sp.submit(ctx, &op{run: func(g *group) error {
		until := g.now.Add(s.cfg.AckTimeout).UnixNano()
		for id, gen := range ids {
			if _, err := g.tx.ExecContext(g.ctx, `UPDATE messages SET not_before = ? WHERE id = ? AND deliveries = ? AND leased = 1`, until, id, gen); err != nil {
				return fmt.Errorf("renew lease: %w", err)
			}
		}
		return nil
	}})
}

// Delete removes m from the spool: queued for the next transaction, with the other changes
// asked for meanwhile. It does not wait; Close commits what is pending.
func (s *Source) Delete(m *queue.Message) {
	h, ok := s.untrack(m)
	if !ok {
		return
	}
	s.sp.deleteLater(h.id)
}

// Retry makes m receivable again after delay, and ends its lease.
func (s *Source) Retry(ctx context.Context, m *queue.Message, delay time.Duration) error {
	h, ok := s.untrack(m)
	if !ok {
		return fmt.Errorf("webhook retry: message %s is not the webhook's", m.ID)
	}
	return s.put(ctx, []handle{h}, delay)
}

// Release makes msgs receivable again at once, and ends their leases.
func (s *Source) Release(ctx context.Context, msgs []*queue.Message) error {
	hs := make([]handle, 0, len(msgs))
	for _, m := range msgs {
		if h, ok := s.untrack(m); ok {
			hs = append(hs, h)
		}
	}
	s.trace("webhook: releasing %d unstarted messages", len(hs))
	return s.put(ctx, hs, 0)
}

// put makes the rows of hs receivable after delay; a row leased again since is left alone.
func (s *Source) put(ctx context.Context, hs []handle, delay time.Duration) error {
	if len(hs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	err := s.sp.submit(ctx, &op{run: func(g *group) error {
		at := g.now.Add(delay).UnixNano()
		for _, h := range hs {
			if _, err := g.tx.ExecContext(g.ctx, `UPDATE messages SET not_before = ?, leased = 0 WHERE id = ? AND deliveries = ?`, at, h.id, h.gen); err != nil {
				return err
			}
		}
		return nil
	}, committed: s.broadcast})
	if err != nil {
		return fmt.Errorf("webhook spool %s: put back %d messages (after %s): %w", s.sp.path, len(hs), delay, err)
	}
	return nil
}

// DeadLetter copies m, with why it failed, into the spool's failures table; Delete then
// removes it from the messages.
func (s *Source) DeadLetter(ctx context.Context, m *queue.Message, why queue.DeadLetter) error {
	h, ok := handleOf(m)
	if !ok {
		return fmt.Errorf("webhook dead letter: message %s is not the webhook's", m.ID)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	err := s.sp.submit(ctx, &op{run: func(g *group) error {
		_, err := g.tx.ExecContext(g.ctx, `INSERT INTO failures (message_id, body, spooled_at, failed_at, error, class, receive_count, attempts)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, h.id, m.Body, m.SentAt.UnixNano(), g.now.UTC().Format(time.RFC3339Nano),
			why.Error, why.Class, why.ReceiveCount, why.Attempts)
		return err
	}})
	if err != nil {
		return fmt.Errorf("webhook spool %s: dead letter of message %s: %w", s.sp.path, m.ID, err)
	}
	return nil
}

// Depth returns the messages receivable now, and the others: leased, or waiting out a retry
// delay (as SQS counts "not visible").
func (s *Source) Depth(ctx context.Context) (visible, inFlight int, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	var v, all *int64
	err = s.sp.db.QueryRowContext(ctx, `SELECT SUM(not_before <= ?), COUNT(*) FROM messages`, time.Now().UnixNano()).Scan(&v, &all)
	if err != nil {
		return 0, 0, fmt.Errorf("webhook spool %s: depth: %w", s.sp.path, err)
	}
	if v == nil || all == nil {
		return 0, 0, nil
	}
	return int(*v), int(*all - *v), nil
}

// Ready reports why the webhook cannot take events or hand them out: its listener stopped, or
// the spool does not take a write.
func (s *Source) Ready(ctx context.Context) error {
	if err := s.serveErr(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	err := s.sp.submit(ctx, &op{run: func(g *group) error {
		_, err := g.tx.ExecContext(g.ctx, `INSERT INTO meta (k, v) VALUES ('ready', ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v`, g.now.UTC().Format(time.RFC3339Nano))
		return err
	}})
	if err != nil {
		return fmt.Errorf("webhook spool %s: not writable: %w", s.sp.path, err)
	}
	return nil
}

// Check is Ready, at start.
func (s *Source) Check(ctx context.Context) error {
	if err := s.Ready(ctx); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// Close stops listening (the POSTs in progress are answered first, within 10s), stops the
// lease renewals, commits the pending deletes and closes the spool. Messages still held come
// back at once when the spool is opened again.
func (s *Source) Close() {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			s.srv.Close()
		}
		close(s.closing)
		s.stopKeepAlive()
		s.bg.Wait()
		if err := s.sp.close(); err != nil {
			s.log.Warn("webhook spool did not close cleanly", "spool", s.sp.path, "error", err)
		}
	})
}

// heldSet is the messages being worked on: row ID -> the delivery that leased it.
type heldSet struct {
	mu sync.Mutex
	m  map[int64]int
}
