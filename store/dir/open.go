package dir

import (
	"context"

	"github.com/palleto/palleto/store"
)

// Writers is how many results a store opened through store.Open writes at once, off the
// workers' path (see WriteInBackground).
const Writers = 16

// The directory store takes every --out that is not a URL: a path.
func init() {
	store.Register(store.Driver{Name: "directory", Files: true, Open: func(_ context.Context, out string, _ store.Options) (store.Store, error) {
		d, err := Open(out)
		if err != nil {
			return nil, err
		}
		d.WriteInBackground(Writers)
		return d, nil
	}})
}

var _ store.Copier = (*Store)(nil)

// CopyPath is where the copy processor's output of bucket/key goes: see the function CopyPath.
func (d *Store) CopyPath(bucket, key string) string { return CopyPath(bucket, key) }
