package sqlstore

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/palleto/palleto/store"
)

// TestSQLiteInAMissingDirectoryNamesIt: `--out sqlite:` in a directory that does not exist says
// which directory, not SQLite's "unable to open database file (14)".
func TestSQLiteInAMissingDirectoryNamesIt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "no", "such")
	_, err := OpenSQLite(context.Background(), filepath.Join(dir, "results.db"), store.GroupConfig{})
	if err == nil || !strings.Contains(err.Error(), "directory "+dir+" does not exist") || !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("OpenSQLite in a missing directory: %v", err)
	}
}

// TestPostgresConnectionErrorSaysEachAddressOnce: pgx tries each address twice with the default
// sslmode=prefer; the error says each failure once.
func TestPostgresConnectionErrorSaysEachAddressOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	_, err = OpenPostgres(context.Background(), "postgres://palleto@"+addr+"/postgres", store.GroupConfig{})
	if err == nil || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("OpenPostgres with nothing listening: %v", err)
	}
	if n := strings.Count(err.Error(), "connection refused"); n != 1 {
		t.Errorf("the connection error says %d times that the connection was refused, want once:\n%v", n, err)
	}
}
