package sqlstore

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/palleto/palleto/store"
	modsqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// dbErr classes a database error: the data's (store.ErrBadData) when the database refused the
// values it was given, else the store's (store.ErrUnavailable). It is the one table of whose
// fault a database error is.
func dbErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if badData(err) {
		return fmt.Errorf("%w: %s: %w", store.ErrBadData, op, err)
	}
	return unavailable(op, err)
}

// badData reports whether err is the database refusing data: PostgreSQL's SQLSTATE class 22
// (data exception: 22021 a NUL byte or invalid UTF-8 in text, 22P05 a \u0000 in JSON, 22008 a
// timestamp out of range, ...); SQLite's SQLITE_TOOBIG and SQLITE_MISMATCH.
func badData(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return strings.HasPrefix(pg.Code, "22")
	}
	var lite *modsqlite.Error
	if errors.As(err, &lite) {
		switch lite.Code() & 0xff {
		case sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH:
			return true
		}
	}
	return false
}
