package sqlstore

import (
	"context"
	"fmt"
	"strings"
)

// schemaVersion is the version of the tables this Palleto writes. A later version adds
// columns (migrations[v] takes version v-1 to v); an older Palleto refuses a newer database.
const schemaVersion = 1

// resultCols are the columns of `results`, in the order row() gives them.
var resultCols = []string{"bucket", `"key"`, "processor", "version_id", "etag", "sequencer", "size", "bytes", "lines", "encoding",
	"message_id", "receive_count", "event_time", "started_at", "finished_at", "fields"}

var failureCols = []string{"subject", "bucket", `"key"`, "version_id", "etag", "sequencer", "message_id", "class", "error", "action",
	"receive_count", "attempts", `"at"`, "body"}

// dialect is what differs between SQLite and PostgreSQL: types, placeholders, the padding of a
// sequencer for comparison, and how a migration is serialised between processes.
type dialect struct {
	name               string
	bigint, time, json string
	ph                 func(i int) string // the i-th placeholder, from 1
	pad                func(col string) string
	lock               string // run first in the migration's transaction; "" when the transaction itself serialises
	// serialWrites: a write transaction holds the database's write lock from its start (SQLite,
	// opened with _txlock=immediate), so what it reads no other writer changes before it commits.
	serialWrites  bool
	selectResult  string
	selectFailure string
	upsertFailure string
	readyWrite    string
	migrations    map[int][]string
}

var sqlite = newDialect(dialect{name: "sqlite", bigint: "INTEGER", time: "TIMESTAMP", json: "TEXT", serialWrites: true,
	ph:  func(int) string { return "?" },
	pad: func(col string) string { return "substr('" + strings.Repeat("0", 64) + "' || upper(" + col + "), -64)" }})

var postgres = newDialect(dialect{name: "postgres", bigint: "BIGINT", time: "TIMESTAMPTZ", json: "JSONB",
	ph:   func(i int) string { return fmt.Sprintf("$%d", i) },
	pad:  func(col string) string { return "lpad(upper(" + col + "), 64, '0')" },
	lock: "SELECT pg_advisory_xact_lock(7423516)"})

func newDialect(d dialect) dialect {
	d.selectResult = "SELECT " + strings.Join(resultCols, ", ") + ` FROM results WHERE bucket = ` + d.ph(1) + ` AND "key" = ` + d.ph(2) + " AND processor = " + d.ph(3)
	d.selectFailure = "SELECT " + strings.Join(failureCols[1:], ", ") + " FROM failures WHERE subject = " + d.ph(1)
	sets := make([]string, 0, len(failureCols))
	for _, c := range failureCols[1:] {
		sets = append(sets, c+" = excluded."+c)
	}
	d.upsertFailure = "INSERT INTO failures (" + strings.Join(failureCols, ", ") + ") VALUES (" + d.placeholders(1, len(failureCols)) +
		") ON CONFLICT (subject) DO UPDATE SET " + strings.Join(sets, ", ")
	d.readyWrite = `INSERT INTO palleto_ready (id, "at") VALUES (1, ` + d.ph(1) + `) ON CONFLICT (id) DO UPDATE SET "at" = excluded."at"`
	d.migrations = map[int][]string{1: {
		`CREATE TABLE IF NOT EXISTS results (
			bucket TEXT NOT NULL, "key" TEXT NOT NULL, processor TEXT NOT NULL,
			version_id TEXT NOT NULL DEFAULT '', etag TEXT NOT NULL DEFAULT '', sequencer TEXT NOT NULL DEFAULT '',
			size ` + d.bigint + ` NOT NULL DEFAULT 0, bytes ` + d.bigint + ` NOT NULL DEFAULT 0, lines ` + d.bigint + `,
			encoding TEXT NOT NULL DEFAULT '', message_id TEXT NOT NULL DEFAULT '', receive_count INTEGER NOT NULL DEFAULT 0,
			event_time ` + d.time + `, started_at ` + d.time + ` NOT NULL, finished_at ` + d.time + ` NOT NULL,
			fields ` + d.json + ` NOT NULL DEFAULT '{}',
			PRIMARY KEY (bucket, "key", processor))`,
		`CREATE TABLE IF NOT EXISTS failures (
			subject TEXT PRIMARY KEY, bucket TEXT NOT NULL DEFAULT '', "key" TEXT NOT NULL DEFAULT '',
			version_id TEXT NOT NULL DEFAULT '', etag TEXT NOT NULL DEFAULT '', sequencer TEXT NOT NULL DEFAULT '',
			message_id TEXT NOT NULL DEFAULT '', class TEXT NOT NULL, error TEXT NOT NULL, action TEXT NOT NULL,
			receive_count INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, "at" ` + d.time + ` NOT NULL,
			body TEXT NOT NULL DEFAULT '')`,
		`CREATE INDEX IF NOT EXISTS results_finished_at ON results (finished_at)`,
		`CREATE TABLE IF NOT EXISTS palleto_ready (id INTEGER PRIMARY KEY, "at" ` + d.time + `)`,
	}}
	return d
}

func (d dialect) placeholders(from, n int) string {
	ps := make([]string, n)
	for i := range ps {
		ps[i] = d.ph(from + i)
	}
	return strings.Join(ps, ", ")
}

// upsert inserts n results; a result already there is replaced unless it is a later event's.
func (d dialect) upsert(n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO results (" + strings.Join(resultCols, ", ") + ") VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(" + d.placeholders(1+i*len(resultCols), len(resultCols)) + ")")
	}
	sets := make([]string, 0, len(resultCols))
	for _, c := range resultCols[3:] {
		sets = append(sets, c+" = excluded."+c)
	}
	b.WriteString(` ON CONFLICT (bucket, "key", processor) DO UPDATE SET ` + strings.Join(sets, ", "))
	b.WriteString(" WHERE NOT (results.sequencer <> '' AND excluded.sequencer <> '' AND " + d.pad("results.sequencer") + " > " + d.pad("excluded.sequencer") + ")")
	return b.String()
}

// selectHeld reads the version and sequencer of the rows of n objects, given as (bucket, key,
// processor) triples.
func (d dialect) selectHeld(n int) string {
	var b strings.Builder
	b.WriteString(`SELECT bucket, "key", processor, version_id, etag, sequencer FROM results WHERE (bucket, "key", processor) IN (VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(" + d.placeholders(1+3*i, 3) + ")")
	}
	b.WriteString(")")
	return b.String()
}

func (d dialect) deleteFailures(n int) string {
	return "DELETE FROM failures WHERE subject IN (" + d.placeholders(1, n) + ")"
}

// commitStmt is the text of a commit's statement of kind (upsertResults, deleteFailures,
// selectHeld) for n rows.
func (d dialect) commitStmt(kind, n int) string {
	switch kind {
	case upsertResults:
		return d.upsert(n)
	case deleteFailures:
		return d.deleteFailures(n)
	default:
		return d.selectHeld(n)
	}
}

// migrate creates the tables, or brings them to schemaVersion, in one transaction that no other
// Palleto runs at the same time.
func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return unavailable(s.where, err)
	}
	defer tx.Rollback()
	if s.d.lock != "" {
		if _, err := tx.ExecContext(ctx, s.d.lock); err != nil {
			return unavailable(s.where+" lock", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS palleto_schema (version INTEGER NOT NULL)`); err != nil {
		return unavailable(s.where+" create palleto_schema", err)
	}
	have := 0
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM palleto_schema`).Scan(&have); err != nil {
		return unavailable(s.where+" schema version", err)
	}
	if have > schemaVersion {
		return fmt.Errorf("%s: the tables are of schema version %d, written by a newer Palleto (this one knows %d)", s.where, have, schemaVersion)
	}
	for v := have + 1; v <= schemaVersion; v++ {
		for _, stmt := range s.d.migrations[v] {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return unavailable(fmt.Sprintf("%s schema %d", s.where, v), err)
			}
		}
	}
	if have != schemaVersion {
		if _, err := tx.ExecContext(ctx, `DELETE FROM palleto_schema`); err != nil {
			return unavailable(s.where, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO palleto_schema (version) VALUES (`+s.d.ph(1)+`)`, schemaVersion); err != nil {
			return unavailable(s.where, err)
		}
	}
	return unavailable(s.where+" commit schema", tx.Commit())
}
