package webhook

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// The spool's tables. Times are unix nanoseconds, but failures.failed_at, which people read.
const schema = `
CREATE TABLE IF NOT EXISTS messages (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	body       BLOB    NOT NULL,
	spooled_at INTEGER NOT NULL,
	not_before INTEGER NOT NULL,           -- receivable from then on (a lease or a retry delay ends)
	deliveries INTEGER NOT NULL DEFAULT 0, -- leases so far: the delivery count
	leased     INTEGER NOT NULL DEFAULT 0  -- 1 while a consumer holds it, until not_before
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (not_before);
CREATE TABLE IF NOT EXISTS failures (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	message_id    INTEGER NOT NULL,
	body          BLOB    NOT NULL,
	spooled_at    INTEGER NOT NULL,
	failed_at     TEXT    NOT NULL,
	error         TEXT    NOT NULL,
	class         TEXT    NOT NULL,
	receive_count INTEGER NOT NULL,
	attempts      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
`

// errSpoolFull is an insert refused because the spool holds its limit of messages.
var errSpoolFull = errors.New("the spool holds its limit of messages")

// errClosed is a call after Close.
var errClosed = errors.New("webhook: source closed")

// maxGroup is the most changes one transaction commits.
const maxGroup = 256

// spool is the durable queue under the webhook: one SQLite database (WAL, synchronous=FULL)
// that belongs to one process (locking_mode=EXCLUSIVE: a second process cannot open it). One
// goroutine writes it: the changes asked for while a commit is on its way are committed
// together in the next transaction (one fsync for many POSTs, deletes and leases). Safe for
// concurrent use.
type spool struct {
	path    string
	db      *sql.DB
	timeout time.Duration // each transaction's deadline
	max     int64         // the most messages it holds
	log     *slog.Logger

	count atomic.Int64 // rows in messages, as committed

	mu      sync.RWMutex // guards closed against submit: no op is sent once the writer may stop
	closed  bool
	ops     chan *op
	stop    chan struct{}
	kick    chan struct{} // buffered 1: deletes are pending
	delMu   sync.Mutex
	deletes []int64 // asked for, not yet committed
	wg      sync.WaitGroup
}

// op is one change, run by the writer inside a group's transaction. run's error fails the
// whole transaction; refused is an answer of the op's own (the spool is full) that leaves the
// others' changes be.
type op struct {
	run     func(g *group) error
	refused error
	done    chan error // buffered 1
	// committed, when set, runs on the writer after the op's transaction committed.
	committed func()
}

// group is what the ops of one transaction share.
type group struct {
	ctx      context.Context
	tx       *sql.Tx
	now      time.Time
	inserted int64 // messages inserted by this transaction's ops so far
}

// openSpool opens (creating when missing) the spool at path, takes it for this process, and
// hands every message a dead process held back at once (the spool has one process: a lease
// left from before is one whose holder is gone).
func openSpool(ctx context.Context, path string, max int64, timeout time.Duration, log *slog.Logger) (*spool, error) {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	// locking_mode before journal_mode: in EXCLUSIVE mode WAL needs no shared memory, and the
	// lock taken by the first write is held until the connection closes.
	dsn := "file:" + esc + "?_pragma=locking_mode(EXCLUSIVE)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(2000)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("webhook spool %s: %w", path, err)
	}
	// One connection: the exclusive lock is the connection's, and SQLite writes one at a time.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	s := &spool{path: path, db: db, timeout: timeout, max: max, log: log,
		ops: make(chan *op), stop: make(chan struct{}), kick: make(chan struct{}, 1)}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var n int64
	err = s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, schema); err != nil {
			return err
		}
		host, _ := os.Hostname()
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (k, v) VALUES ('owner', ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v`,
			fmt.Sprintf("pid %d on %s since %s", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE messages SET leased = 0, not_before = ? WHERE leased = 1`, time.Now().UnixNano()); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM messages`).Scan(&n)
	})
	if err != nil {
		db.Close()
		if isBusy(err) {
			return nil, fmt.Errorf("webhook spool %s: in use by another process (a spool belongs to one process: give each its own --spool, or scale out with a broker): %w", path, err)
		}
		return nil, fmt.Errorf("webhook spool %s: %w", path, err)
	}
	s.count.Store(n)
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.writer() }()
	return s, nil
}

func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && (se.Code()&0xff == 5 || se.Code()&0xff == 6) // SQLITE_BUSY, SQLITE_LOCKED
}

// isFull says whether err is the disk (or the database's size limit) being full.
func isFull(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == 13 // SQLITE_FULL
}

// tx runs f in one transaction under ctx and commits it.
func (s *spool) tx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// submit hands o to the writer and waits for its transaction, or for ctx. An op given up on
// may still commit: only an op whose submit returned nil is known to be on disk.
func (s *spool) submit(ctx context.Context, o *op) error {
	o.done = make(chan error, 1)
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return errClosed
	}
	select {
	case s.ops <- o:
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	s.mu.RUnlock()
	select {
	case err := <-o.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// deleteLater queues the deletion of message id for the next transaction. It does not wait.
func (s *spool) deleteLater(id int64) {
	s.delMu.Lock()
	s.deletes = append(s.deletes, id)
	s.delMu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default: // a kick is pending already
	}
}

// writer commits the ops and deletes asked for, a group at a time, until close; then it
// commits what is left and returns.
func (s *spool) writer() {
	for {
		var batch []*op
		select {
		case o := <-s.ops:
			batch = append(batch, o)
		case <-s.kick:
		case <-s.stop:
			// No op can be sent any more (closed is set); commit the pending deletes.
			s.commit(nil)
			return
		}
	more:
		for len(batch) < maxGroup {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break more
			}
		}
		s.commit(batch)
	}
}

// commit runs batch and the pending deletes in one transaction. When that fails, each op is
// run again in a transaction of its own, so that each gets its own answer (one bad op does not
// fail the others), and deletes that failed stay pending for the next transaction.
func (s *spool) commit(batch []*op) {
	s.delMu.Lock()
	dels := s.deletes
	s.deletes = nil
	s.delMu.Unlock()
	err := s.group(batch, dels)
	if err == nil {
		for _, o := range batch {
			o.done <- o.refused
		}
		return
	}
	// A deadline passed (a stalled disk): each op alone would wait as long again.
	stalled := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
	if !stalled && len(batch)+min(len(dels), 1) > 1 {
		for _, o := range batch {
			err := s.group([]*op{o}, nil)
			if err == nil {
				err = o.refused
			}
			o.done <- err
		}
		if len(dels) > 0 {
			err = s.group(nil, dels)
		}
	} else {
		for _, o := range batch {
			o.done <- err
		}
	}
	if err != nil && len(dels) > 0 {
		s.log.Warn("webhook spool: deleting done messages failed; trying again with the next change (until then they are kept, and found done if they come back)",
			"spool", s.path, "messages", len(dels), "error", err)
		s.delMu.Lock()
		s.deletes = append(dels, s.deletes...)
		s.delMu.Unlock()
	}
}

// group runs ops and deletes dels in one transaction under the spool's deadline.
func (s *spool) group(ops []*op, dels []int64) error {
	if len(ops) == 0 && len(dels) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	var deleted int64
	g := &group{ctx: ctx, now: time.Now()}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		g.tx = tx
		g.inserted, deleted = 0, 0
		for _, o := range ops {
			o.refused = nil
			if err := o.run(g); err != nil {
				return err
			}
		}
		for len(dels) > 0 {
			chunk := dels[:min(len(dels), 500)]
			dels = dels[len(chunk):]
			args := make([]any, len(chunk))
			for i, id := range chunk {
				args[i] = id
			}
			res, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE id IN (?`+strings.Repeat(",?", len(chunk)-1)+`)`, args...)
			if err != nil {
				return fmt.Errorf("delete: %w", err)
			}
			n, _ := res.RowsAffected()
			deleted += n
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("webhook spool %s: %w", s.path, err)
	}
	s.count.Add(g.inserted - deleted)
	for _, o := range ops {
		if o.committed != nil && o.refused == nil {
			o.committed()
		}
	}
	return nil
}

// close commits the pending deletes, stops the writer and closes the database. Ops submitted
// after it fail with errClosed.
func (s *spool) close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	s.wg.Wait()
	return s.db.Close()
}
