package sqlstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/palleto/palleto/store"
)

// TestDeletedOrReplacedSQLiteFileIsUnavailable: the database file deleted while Palleto runs
// (rm res.db res.db-wal res.db-shm), or another file moved over it, makes the store
// unavailable, with an error naming the path: no commit is reported durable (so no message
// is deleted) and Ready says why.
func TestDeletedOrReplacedSQLiteFileIsUnavailable(t *testing.T) {
	for _, how := range []string{"deleted", "replaced"} {
		t.Run(how, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "res.db")
			s, err := OpenSQLite(ctx, path, store.GroupConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			put := func(key string) error {
				done := make(chan error, 1)
				s.Put(ctx, store.Result{Bucket: "b", Key: key, Processor: "lines"}, func(err error) { done <- err })
				if key == "after" { // held while the store is unavailable: Close fails it
					s.com.Close()
				}
				return <-done
			}
			if err := put("before"); err != nil {
				t.Fatal(err)
			}
			if err := s.Ready(ctx); err != nil {
				t.Fatal(err)
			}
			switch how {
			case "deleted":
				for _, suffix := range []string{"", "-wal", "-shm"} {
					if err := os.Remove(path + suffix); err != nil {
						t.Fatal(err)
					}
				}
			case "replaced":
				other := filepath.Join(t.TempDir(), "other.db")
				o, err := OpenSQLite(ctx, other, store.GroupConfig{})
				if err != nil {
					t.Fatal(err)
				}
				o.Close()
				if err := os.Rename(other, path); err != nil {
					t.Fatal(err)
				}
			}
			err = s.Ready(ctx)
			if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "file was "+how) {
				t.Fatalf("Ready after the database file was %s: %v; want the store unavailable, naming %s and saying it was %s", how, err, path, how)
			}
			if err := s.WriteGroup(ctx, []store.Result{{Bucket: "b", Key: "direct", Processor: "lines"}}); !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("a commit after the database file was %s: %v; want the store unavailable", how, err)
			}
			if err := put("after"); !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("a result put after the database file was %s: done(%v); want the store unavailable, never durable", how, err)
			}
		})
	}
}
