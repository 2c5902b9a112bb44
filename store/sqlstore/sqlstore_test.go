package sqlstore

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

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

// Lookups from as many workers as Palleto runs reuse their connections: none is closed for want
// of an idle slot (each would be reopened for the next lookup, a new PostgreSQL backend or a new
// SQLite file handle, with its statements prepared again).
func TestLookupsKeepTheirConnections(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			ctx := context.Background()
			var s *Store
			var err error
			if db == "sqlite" {
				s, err = OpenSQLite(ctx, filepath.Join(t.TempDir(), "results.db"), store.GroupConfig{})
			} else {
				testenv.PostgresURL(t)
				s, err = OpenPostgres(ctx, testenv.PostgresDatabase(t), store.GroupConfig{})
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
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
