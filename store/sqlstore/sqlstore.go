// Package sqlstore is the results store on a database: SQLite (`--out sqlite:PATH`, pure Go,
// modernc.org/sqlite, WAL, every commit fsynced) or PostgreSQL (`--out postgres://...`, jackc/pgx
// v5). Results are written in groups, one transaction each (store.Committer): a worker hands its
// result on and takes the next object, and a message is deleted only once the group holding its
// results is committed. Both databases hold the same two tables, `results` and `failures`
// (schema.go), readable with their own tools while Palleto runs.
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/palleto/palleto/store"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// Store is a database results store. Safe for concurrent use.
type Store struct {
	db    *sql.DB
	d     dialect
	where string
	com   *store.Committer
	// The lookups every object makes, prepared once (database/sql keeps one per connection).
	selectResult, selectFailure *sql.Stmt
	anyFailure                  *sql.Stmt // a row of failures, if any
	mu                          sync.Mutex
	stmts                       map[stmtKey]*sql.Stmt // a commit's statements, by kind and rows (prepared)
	// file is the SQLite database file this store opened (nil for PostgreSQL, or a database
	// with no file): see checkFile.
	file *dbFile
}

var _ store.Store = (*Store)(nil)

// OpenSQLite opens (creating it and its tables when missing) the SQLite database at path.
func OpenSQLite(ctx context.Context, path string, cfg store.GroupConfig) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: a path is required (--out sqlite:results.db)")
	}
	// WAL: readers (sqlite3 on the command line, Palleto's lookups) never block the writer.
	// synchronous=FULL: a committed group is on disk before its messages are deleted, so a
	// deleted message's result survives a power loss. _txlock=immediate: a writer takes the
	// lock when it begins, instead of failing on upgrade when another process writes.
	if dir := filepath.Dir(path); dir != "" {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("%w: sqlite %s: directory %s does not exist", store.ErrUnavailable, path, dir)
		}
	}
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: sqlite %s: %w", store.ErrUnavailable, path, err)
	}
	return open(ctx, db, sqlite, "sqlite:"+path, path, cfg)
}

// OpenPostgres connects to the PostgreSQL database url (postgres://user:pass@host/db?...) and
// creates the tables when missing.
func OpenPostgres(ctx context.Context, url string, cfg store.GroupConfig) (*Store, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("%w: postgres: %w", store.ErrUnavailable, err)
	}
	return open(ctx, db, postgres, redact(url), "", cfg)
}

// redact hides a password in a connection URL, for the log.
func redact(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		if user, _, ok := strings.Cut(rest[:at], ":"); ok {
			return scheme + "://" + user + ":xxx@" + rest[at+1:]
		}
	}
	return url
}

// maxConns bounds the connections of a Store: the workers' lookups and the committer's writes.
const maxConns = 16

// open prepares the store on db; file, when not "", is the SQLite database's path.
func open(ctx context.Context, db *sql.DB, d dialect, where, file string, cfg store.GroupConfig) (*Store, error) {
	// Keep the connections the workers use between their lookups: database/sql keeps 2 idle by
	// default, so with more workers than that every lookup would open a connection (a new
	// PostgreSQL backend; for SQLite, the file, its pragmas, its schema) and prepare its
	// statements again. Idle ones close after a minute. At most maxConns are open (on SQLite, each
	// has its own page cache), more workers wait for one.
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxIdleTime(time.Minute)
	s := &Store{db: db, d: d, where: where, stmts: map[stmtKey]*sql.Stmt{}}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	var err error
	if s.selectResult, err = db.PrepareContext(ctx, d.selectResult); err == nil {
		s.selectFailure, err = db.PrepareContext(ctx, d.selectFailure)
	}
	if err == nil {
		s.anyFailure, err = db.PrepareContext(ctx, "SELECT 1 FROM failures LIMIT 1")
	}
	if err != nil {
		db.Close()
		return nil, unavailable(where+" prepare", err)
	}
	if file != "" {
		s.file = openedFile(file)
	}
	s.com = store.NewCommitter(s, cfg)
	return s, nil
}

func (s *Store) String() string { return s.where }

func unavailable(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %s: %w", store.ErrUnavailable, op, onceEach{err})
}

// onceEach is an error whose repeated lines are said once: pgx names each address it tried,
// and with sslmode=prefer (the default) it tries each twice, TLS then plain, with the same error.
type onceEach struct{ error }

func (e onceEach) Error() string {
	lines := strings.Split(e.error.Error(), "\n")
	seen := make(map[string]bool, len(lines))
	out := lines[:0]
	for _, l := range lines {
		if !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func (e onceEach) Unwrap() error { return e.error }

// Ready writes to the database: it answers and takes a write.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.checkFile(); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, s.d.readyWrite, time.Now().UTC())
	return unavailable(s.where+" not writable", err)
}

// Close commits what is pending and closes the database.
func (s *Store) Close() error {
	s.com.Close()
	s.mu.Lock()
	for _, st := range s.stmts {
		st.Close()
	}
	s.mu.Unlock()
	return s.db.Close()
}

// Stats returns the groups and results committed so far.
func (s *Store) Stats() (groups, results int64) { return s.com.Stats() }

// Put hands r to the committer; done is called once its group is committed. A result whose
// fields cannot be encoded fails at once, alone.
func (s *Store) Put(ctx context.Context, r store.Result, done func(error)) string {
	where := s.where + " results " + r.Bucket + "/" + r.Key
	if !plainFields(r.Fields) {
		if _, err := fieldsJSON(r); err != nil {
			done(err)
			return where
		}
	}
	s.com.Put(ctx, r, done)
	return where
}

// WriteGroup is WriteGroupReport without the report.
func (s *Store) WriteGroup(ctx context.Context, rs []store.Result) error {
	_, err := s.WriteGroupReport(ctx, rs)
	return err
}

// DecidesAtCommit is true: a lookup is a query (with PostgreSQL a round trip), while the commit
// reads the rows of its whole group in one (store.CommitDecider).
func (s *Store) DecidesAtCommit() bool { return true }

// WriteGroupReport writes rs in one transaction: an upsert of every result but those the
// database holds a later event's result or a result of the same object version for (kept[i] is
// then store.ErrSuperseded or store.ErrAlreadyStored), and the removal of their objects' failure
// records. The rows there are read in the transaction first, one query per 500 results; on
// SQLite the transaction holds the write lock from its start, so the report is exact. On
// PostgreSQL a replica may insert a row between the read and the upsert: the upsert still never
// puts an older event over a newer one, and the report may then say written for both.
func (s *Store) WriteGroupReport(ctx context.Context, rs []store.Result) ([]error, error) {
	if err := s.checkFile(); err != nil {
		return nil, err
	}
	kept := make([]error, len(rs))
	idx := latest(rs, kept)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, unavailable(s.where+" begin", err)
	}
	defer tx.Rollback()
	noFailures, err := s.noFailures(ctx, tx)
	if err != nil {
		return nil, err
	}
	for start := 0; start < len(idx); start += maxPiece {
		chunk := idx[start:min(start+maxPiece, len(idx))]
		held, err := s.held(ctx, tx, rs, chunk)
		if err != nil {
			return nil, err
		}
		args := make([]any, 0, len(chunk)*len(resultCols))
		for _, i := range chunk {
			r := rs[i]
			if h, ok := held[objectID{r.Bucket, r.Key, r.Processor}]; ok {
				if store.Later(h.Sequencer, r.Sequencer) {
					kept[i] = store.ErrSuperseded
					continue
				}
				if store.SameVersion(h, r.VersionID, r.ETag) {
					kept[i] = store.ErrAlreadyStored
					continue
				}
			}
			row, err := s.row(r)
			if err != nil {
				return nil, err
			}
			args = append(args, row...)
		}
		if err := s.execPieces(ctx, tx, upsertResults, args); err != nil {
			return nil, dbErr(s.where+" insert results", err)
		}
		if noFailures {
			continue
		}
		subjects := make([]any, len(chunk))
		for k, i := range chunk {
			subjects[k] = subject(rs[i].Bucket, rs[i].Key, "")
		}
		if err := s.execPieces(ctx, tx, deleteFailures, subjects); err != nil {
			return nil, dbErr(s.where+" delete failures", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, dbErr(s.where+" commit", err)
	}
	// Committed, but to the file the path names? One deleted meanwhile takes the group with it.
	return kept, s.checkFile()
}

// noFailures says whether the failures table is empty, so that a commit need not delete its
// objects' failure records (most commits: failures are rare). Only where the commit's
// transaction holds the write lock from its start (SQLite: dialect.serialWrites), so that no
// failure record can be written between this read and the commit; on PostgreSQL the deletes
// always run.
func (s *Store) noFailures(ctx context.Context, tx *sql.Tx) (bool, error) {
	if !s.d.serialWrites {
		return false, nil
	}
	var one int
	err := tx.StmtContext(ctx, s.anyFailure).QueryRowContext(ctx).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return true, nil
	}
	if err != nil {
		return false, dbErr(s.where+" read failures", err)
	}
	return false, nil
}

// objectID is a row's key: one result per object and processor.
type objectID struct{ bucket, key, processor string }

// held returns the rows the database holds for the results rs[chunk] (their version and
// sequencer only), read in tx.
func (s *Store) held(ctx context.Context, tx *sql.Tx, rs []store.Result, chunk []int) (map[objectID]*store.Result, error) {
	args := make([]any, 0, 3*len(chunk))
	for _, i := range chunk {
		args = append(args, rs[i].Bucket, rs[i].Key, rs[i].Processor)
	}
	held := map[objectID]*store.Result{}
	err := s.inPieces(ctx, tx, selectHeld, args, func(st *sql.Stmt, args []any) error {
		rows, err := st.QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r store.Result
			if err := rows.Scan(&r.Bucket, &r.Key, &r.Processor, &r.VersionID, &r.ETag, &r.Sequencer); err != nil {
				return err
			}
			held[objectID{r.Bucket, r.Key, r.Processor}] = &r
		}
		return rows.Err()
	})
	if err != nil {
		return nil, dbErr(s.where+" select results", err)
	}
	return held, nil
}

// The statements of a group's commit, by kind, and the rows each takes.
const (
	upsertResults = iota
	deleteFailures
	selectHeld
)

var perRow = [...]int{upsertResults: len(resultCols), deleteFailures: 1, selectHeld: 3}

// maxPiece is the most rows one statement of a commit takes (16 × 256 parameters: well under
// both databases' bound).
const maxPiece = 256

// piece is the rows of the next statement for n rows to go: the largest power of two up to n.
// A commit's statements take 256, 128, ..., 2 or 1 rows, so that each is parsed once per
// connection and prepared from then on (parsing a statement of n rows for every group cost
// SQLite about 4 µs a result, a tenth of P2's commit), and a group takes at most 9 of a kind.
func piece(n int) int {
	p := 1
	for p*2 <= n && p*2 <= maxPiece {
		p *= 2
	}
	return p
}

// execPieces runs the statement of kind over args (perRow[kind] of them a row), in pieces.
func (s *Store) execPieces(ctx context.Context, tx *sql.Tx, kind int, args []any) error {
	return s.inPieces(ctx, tx, kind, args, func(st *sql.Stmt, args []any) error {
		_, err := st.ExecContext(ctx, args...)
		return err
	})
}

// inPieces calls run with the statement of kind for each piece of args (perRow[kind] of them a
// row) and that piece's arguments.
func (s *Store) inPieces(ctx context.Context, tx *sql.Tx, kind int, args []any, run func(*sql.Stmt, []any) error) error {
	for len(args) > 0 {
		n := piece(len(args) / perRow[kind])
		st, err := s.prepared(ctx, tx, kind, n)
		if err != nil {
			return err
		}
		if err := run(st, args[:n*perRow[kind]]); err != nil {
			return err
		}
		args = args[n*perRow[kind]:]
	}
	return nil
}

// prepared returns the statement of kind for n rows, prepared once on the database (database/sql
// prepares it again on each connection the first time it runs there), for use in tx.
func (s *Store) prepared(ctx context.Context, tx *sql.Tx, kind, n int) (*sql.Stmt, error) {
	k := stmtKey{kind, n}
	s.mu.Lock()
	st := s.stmts[k]
	s.mu.Unlock()
	if st == nil {
		var err error
		if st, err = s.db.PrepareContext(ctx, s.d.commitStmt(kind, n)); err != nil {
			return nil, err
		}
		s.mu.Lock()
		if have := s.stmts[k]; have != nil {
			st.Close()
			st = have
		} else {
			s.stmts[k] = st
		}
		s.mu.Unlock()
	}
	return tx.StmtContext(ctx, st), nil
}

type stmtKey struct{ kind, rows int }

// latest returns the indexes of the results of rs to write: one per object and processor, the
// one of the latest event, in order. Of the others, kept[i] says what became of them: the same
// version as the one written (store.ErrAlreadyStored), an earlier event than it
// (store.ErrSuperseded), or nil when the two cannot be ordered (replaced).
func latest(rs []store.Result, kept []error) []int {
	at := map[objectID]int{} // index in out
	out := make([]int, 0, len(rs))
	drop := func(i, by int) {
		switch {
		case store.SameVersion(&rs[by], rs[i].VersionID, rs[i].ETag):
			kept[i] = store.ErrAlreadyStored
		case store.Later(rs[by].Sequencer, rs[i].Sequencer):
			kept[i] = store.ErrSuperseded
		}
	}
	for i, r := range rs {
		k := objectID{r.Bucket, r.Key, r.Processor}
		if o, ok := at[k]; ok {
			if prev := out[o]; !store.Later(rs[prev].Sequencer, r.Sequencer) {
				out[o] = i
				drop(prev, i)
			} else {
				drop(i, prev)
			}
			continue
		}
		at[k] = len(out)
		out = append(out, i)
	}
	return out
}

func (s *Store) row(r store.Result) ([]any, error) {
	var lines any
	if l, ok := r.Fields["lines"]; ok {
		switch v := l.(type) {
		case int64:
			lines = v
		case int:
			lines = int64(v)
		case float64:
			lines = int64(v)
		}
	}
	fields, err := fieldsJSON(r)
	if err != nil {
		return nil, err
	}
	return []any{r.Bucket, r.Key, r.Processor, r.VersionID, r.ETag, r.Sequencer, r.Size, r.Bytes, lines, r.Encoding,
		r.MessageID, r.ReceiveCount, nullTime(r.EventTime), r.StartedAt.UTC(), r.FinishedAt.UTC(), fields}, nil
}

// fieldsJSON is the `fields` column of r: its processor's fields as a JSON object, or an error
// wrapping store.ErrBadData.
func fieldsJSON(r store.Result) (string, error) {
	if len(r.Fields) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(r.Fields)
	if err != nil {
		return "", fmt.Errorf("%w: result fields of s3://%s/%s: %w", store.ErrBadData, r.Bucket, r.Key, err)
	}
	return string(b), nil
}

// plainFields says whether fields hold only values that always encode (integers, finite
// floats, strings, booleans): then Put need not encode them to know (the commit does, once).
func plainFields(fields map[string]any) bool {
	for _, v := range fields {
		switch v := v.(type) {
		case int, int64, int32, uint, uint64, uint32, string, bool, nil:
		case float64:
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

// Result returns the stored result of the object and processor, or nil.
func (s *Store) Result(ctx context.Context, bucket, key, processor string) (*store.Result, error) {
	var r store.Result
	var lines sql.NullInt64
	var eventTime sql.NullTime
	var fields string
	err := s.selectResult.QueryRowContext(ctx, bucket, key, processor).Scan(&r.Bucket, &r.Key, &r.Processor, &r.VersionID, &r.ETag,
		&r.Sequencer, &r.Size, &r.Bytes, &lines, &r.Encoding, &r.MessageID, &r.ReceiveCount, &eventTime, &r.StartedAt, &r.FinishedAt, &fields)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if badData(err) { // a key the database cannot hold (a NUL byte): no result can be stored under it
		return nil, nil
	}
	if err != nil {
		return nil, unavailable(s.where+" select result", err)
	}
	r.EventTime = eventTime.Time
	if fields != "" && fields != "{}" {
		json.Unmarshal([]byte(fields), &r.Fields)
	}
	if lines.Valid {
		if r.Fields == nil {
			r.Fields = map[string]any{}
		}
		r.Fields["lines"] = lines.Int64
	}
	return &r, nil
}
