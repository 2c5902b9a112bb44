package s3store

import (
	"context"
	"fmt"

	"github.com/palleto/palleto/store"
)

// The S3 store takes --out s3://BUCKET/PREFIX, on the daemon's S3 client (store.Options.S3).
func init() {
	store.Register(store.Driver{Name: "s3", Prefixes: []string{"s3://"}, Form: "s3://BUCKET/PREFIX", Files: true,
		Check: func(out string) error { _, _, err := Parse(out); return err },
		Open: func(_ context.Context, out string, opts store.Options) (store.Store, error) {
			api, ok := opts.S3.(API)
			if !ok {
				return nil, fmt.Errorf("%s needs an S3 client that can also put and delete objects", out)
			}
			s, err := Open(api, out)
			if err != nil {
				return nil, err
			}
			if opts.Logger != nil {
				s.log = opts.Logger
			}
			return s, nil
		}})
}

var _ store.Copier = (*Store)(nil)
