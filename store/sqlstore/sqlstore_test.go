package sqlstore

import (
	"context"
	"path/filepath"
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
