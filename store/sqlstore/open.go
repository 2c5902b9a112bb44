package sqlstore

import (
	"context"
	"fmt"

	"github.com/palleto/palleto/store"
)

// SQLite takes --out sqlite:PATH; PostgreSQL postgres://... and postgresql://...
func init() {
	store.Register(store.Driver{Name: "sqlite", Prefixes: []string{"sqlite:"}, Form: "sqlite:PATH",
		Check: func(out string) error {
			if out[len("sqlite:"):] == "" {
				return fmt.Errorf("%q names no database file (sqlite:results.db)", out)
			}
			return nil
		},
		Open: func(ctx context.Context, out string, opts store.Options) (store.Store, error) {
			return OpenSQLite(ctx, out[len("sqlite:"):], opts.Group)
		}})
	store.Register(store.Driver{Name: "postgres", Prefixes: []string{"postgres://", "postgresql://"}, Form: "postgres://...",
		Open: func(ctx context.Context, out string, opts store.Options) (store.Store, error) {
			return OpenPostgres(ctx, out, opts.Group)
		}})
}
