package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/store"
	"github.com/palleto/palleto/store/storetest"
)

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		path := filepath.Join(t.TempDir(), "results.db")
		return func() (store.Store, error) { return OpenSQLite(context.Background(), path, store.GroupConfig{}) }
	})
}

// TestPostgresConformance runs on the PostgreSQL that scripts/testservers.sh starts
// (PALLETO_TEST_POSTGRES_URL); each subtest gets a database of its own.
func TestPostgresConformance(t *testing.T) {
	testenv.PostgresURL(t)
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		url := testenv.PostgresDatabase(t)
		return func() (store.Store, error) { return OpenPostgres(context.Background(), url, store.GroupConfig{}) }
	})
}

// openFresh opens a new store of db ("sqlite" in a temporary directory, or "postgres": a
// database of its own on the test server, skipped without one), closed when t ends.
func openFresh(t *testing.T, db string) *Store {
	t.Helper()
	var s *Store
	var err error
	if db == "sqlite" {
		s, err = OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "results.db"), store.GroupConfig{})
	} else {
		testenv.PostgresURL(t)
		s, err = OpenPostgres(context.Background(), testenv.PostgresDatabase(t), store.GroupConfig{})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Lookups from as many workers as Palleto runs reuse their connections: none is closed for want
// of an idle slot (each would be reopened for the next lookup, a new PostgreSQL backend or a new
// SQLite file handle, with its statements prepared again).
func TestLookupsKeepTheirConnections(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			ctx := context.Background()
			s := openFresh(t, db)
			const workers, each = 8, 50
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						if _, err := s.Result(ctx, "b", fmt.Sprintf("k/%d/%d", w, i), "lines"); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			st := s.db.Stats()
			t.Logf("%d lookups: %+v", workers*each, st)
			if st.MaxIdleClosed > 0 || st.OpenConnections > maxConns {
				t.Errorf("%d connections closed for want of an idle slot, %d open (at most %d): every lookup may open a connection", st.MaxIdleClosed, st.OpenConnections, maxConns)
			}
		})
	}
}

// A commit of any size is written in pieces of prepared statements (256, 128, ..., 1 rows):
// every result of a group is stored or reported as there already, and the failure records of
// every object of the group are gone, whatever the group's size.
func TestCommitsOfEverySize(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			ctx := context.Background()
			s := openFresh(t, db)
			now := time.Now().UTC()
			result := func(size, i int) store.Result {
				return store.Result{Bucket: "b", Key: fmt.Sprintf("g%d/%04d", size, i), Processor: "lines", ETag: "e1",
					StartedAt: now, FinishedAt: now, Fields: map[string]any{"lines": int64(i)}}
			}
			for _, size := range []int{1, 2, 7, 255, 256, 257, 600} {
				// Every third object of the group is stored already, and every object has a failure record.
				var first []store.Result
				for i := range size {
					if i%3 == 0 {
						first = append(first, result(size, i))
					}
					k := result(size, i)
					if _, err := s.PutFailure(ctx, store.Failure{Bucket: k.Bucket, Key: k.Key, MessageID: "m", Class: "retryable", Error: "x", Action: "kept", At: now}); err != nil {
						t.Fatal(err)
					}
				}
				if err := s.WriteGroup(ctx, first); err != nil {
					t.Fatal(err)
				}
				group := make([]store.Result, size)
				for i := range group {
					group[i] = result(size, i)
				}
				kept, err := s.WriteGroupReport(ctx, group)
				if err != nil {
					t.Fatalf("group of %d: %v", size, err)
				}
				for i, r := range group {
					if want := i%3 == 0; errors.Is(kept[i], store.ErrAlreadyStored) != want {
						t.Errorf("group of %d, result %d: reported %v, stored before: %v", size, i, kept[i], want)
					}
					got, err := s.Result(ctx, r.Bucket, r.Key, r.Processor)
					if err != nil || got == nil || got.Fields["lines"] != float64(i) && got.Fields["lines"] != int64(i) {
						t.Fatalf("group of %d, result %d: stored %+v, %v", size, i, got, err)
					}
					if f, err := s.Failure(ctx, r.Bucket, r.Key, "m"); err != nil || f != nil {
						t.Fatalf("group of %d, result %d: failure record left: %+v, %v", size, i, f, err)
					}
				}
			}
		})
	}
}
