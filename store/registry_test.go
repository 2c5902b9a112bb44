package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/palleto/palleto/store"
	_ "github.com/palleto/palleto/store/dir"
	_ "github.com/palleto/palleto/store/s3store"
	_ "github.com/palleto/palleto/store/sqlstore"
)

// TestKind: each form of --out chooses its store through the drivers the store packages
// register; what no driver takes is an error that lists the forms.
func TestKind(t *testing.T) {
	for _, tt := range []struct{ out, kind, err string }{
		{"out", "directory", ""},
		{"/var/lib/palleto/results", "directory", ""},
		{"sqlite-results", "directory", ""}, // no colon: a directory's name
		{"sqlite:results.db", "sqlite", ""},
		{"sqlite:", "", "names no database file"},
		{"postgres://u@h/db", "postgres", ""},
		{"postgresql://u@h/db", "postgres", ""},
		{"s3://bucket/prefix", "s3", ""},
		{"s3://", "", "s3://BUCKET/PREFIX"},
		{"", "", "required"},
		{"ftp://h/x", "", "not a store Palleto knows (a directory, postgres://..., s3://BUCKET/PREFIX, or sqlite:PATH)"},
	} {
		kind, err := store.Kind(tt.out)
		if kind != tt.kind || (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("Kind(%q) = %q, %v; want %q and an error with %q", tt.out, kind, err, tt.kind, tt.err)
		}
	}
}

// TestFilesAndCopier: the drivers that say they hold files open stores that are Copiers, the
// others not; the daemon gives --processor copy a store through that interface alone.
func TestFilesAndCopier(t *testing.T) {
	for _, out := range []string{t.TempDir(), "sqlite:" + t.TempDir() + "/r.db"} {
		d, err := store.Lookup(out)
		if err != nil {
			t.Fatal(err)
		}
		st, err := store.Open(context.Background(), out, store.Options{})
		if err != nil {
			t.Fatalf("open %s: %v", out, err)
		}
		_, copier := st.(store.Copier)
		st.Close()
		if copier != d.Files {
			t.Errorf("%s store: Files %v, but the store is a Copier: %v", d.Name, d.Files, copier)
		}
	}
	if d, _ := store.Lookup("s3://b/p"); !d.Files {
		t.Error("the s3 store does not say it holds files")
	}
	if _, err := store.Open(context.Background(), "s3://b/p", store.Options{}); err == nil || !strings.Contains(err.Error(), "S3 client") {
		t.Errorf("an s3:// store without an S3 client: %v, want an error naming the client", err)
	}
}

func TestRegisterRefusesATakenPrefix(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("a second driver for sqlite: was accepted")
		}
	}()
	store.Register(store.Driver{Name: "other", Prefixes: []string{"sqlite:"}, Open: func(context.Context, string, store.Options) (store.Store, error) { return nil, nil }})
}
