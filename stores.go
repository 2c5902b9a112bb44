package palleto

import (
	"context"

	"github.com/palleto/palleto/fetch"
	"github.com/palleto/palleto/store"
	_ "github.com/palleto/palleto/store/dir"      // --out DIR
	_ "github.com/palleto/palleto/store/s3store"  // --out s3://BUCKET/PREFIX
	_ "github.com/palleto/palleto/store/sqlstore" // --out sqlite:PATH, postgres://...
)

// Kinds of results store, chosen by the form of --out (the names the stores register).
const (
	StoreDirectory = "directory"
	StoreSQLite    = "sqlite"
	StorePostgres  = "postgres"
	StoreS3        = "s3"
)

// StoreKind names the store an --out value chooses: store.Kind.
func StoreKind(out string) (string, error) { return store.Kind(out) }

// OpenStore opens the results store --out names: store.Open, with the commit groups of the
// database stores and the S3 client of an s3:// store.
func OpenStore(ctx context.Context, out string, group store.GroupConfig, s3c fetch.API) (store.Store, error) {
	return store.Open(ctx, out, store.Options{Group: group, S3: s3c, Logger: group.Logger})
}
