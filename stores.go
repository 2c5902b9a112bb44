package palleto

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/palleto/palleto/fetch"
	"github.com/palleto/palleto/sink"
	"github.com/palleto/palleto/store"
	"github.com/palleto/palleto/store/s3store"
	"github.com/palleto/palleto/store/sqlstore"
)

// Kinds of results store, chosen by the form of --out.
const (
	StoreDirectory = "directory"
	StoreSQLite    = "sqlite"
	StorePostgres  = "postgres"
	StoreS3        = "s3"
)

// StoreKind names the store an --out value chooses: sqlite:PATH, postgres://... (or
// postgresql://), s3://BUCKET/PREFIX, or else a directory. A URL of another scheme is an error.
func StoreKind(out string) (string, error) {
	switch {
	case out == "":
		return "", fmt.Errorf("out: required (a directory, sqlite:PATH, postgres://..., or s3://BUCKET/PREFIX)")
	case strings.HasPrefix(out, "sqlite:"):
		if strings.TrimPrefix(out, "sqlite:") == "" {
			return "", fmt.Errorf("out: %q names no database file (sqlite:results.db)", out)
		}
		return StoreSQLite, nil
	case strings.HasPrefix(out, "postgres://"), strings.HasPrefix(out, "postgresql://"):
		return StorePostgres, nil
	case strings.HasPrefix(out, "s3://"):
		if _, _, err := s3store.Parse(out); err != nil {
			return "", fmt.Errorf("out: %v", err)
		}
		return StoreS3, nil
	case strings.Contains(out, "://"):
		return "", fmt.Errorf("out: %q is not a store Palleto knows (a directory, sqlite:PATH, postgres://..., or s3://BUCKET/PREFIX)", out)
	}
	return StoreDirectory, nil
}

// OpenStore opens the results store --out names. s3c is the S3 client of an s3:// store (it
// must also make PutObject and DeleteObject calls); group sizes the commits of the database
// stores. Opening a database connects to it and creates its tables when missing.
func OpenStore(ctx context.Context, out string, group store.GroupConfig, s3c fetch.API) (store.Store, error) {
	kind, err := StoreKind(out)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switch kind {
	case StoreSQLite:
		return sqlstore.OpenSQLite(ctx, strings.TrimPrefix(out, "sqlite:"), group)
	case StorePostgres:
		return sqlstore.OpenPostgres(ctx, out, group)
	case StoreS3:
		api, ok := s3c.(s3store.API)
		if !ok {
			return nil, fmt.Errorf("out: %s needs an S3 client that can also put and delete objects", out)
		}
		return s3store.Open(api, out)
	}
	d, err := sink.Open(out)
	if err != nil {
		return nil, err
	}
	d.WriteInBackground(dirWriters)
	return d, nil
}

// dirWriters is how many results the directory store writes at once, off the workers' path.
const dirWriters = 16
