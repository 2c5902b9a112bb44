package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
)

// Options are what the daemon gives a store when it opens one. A store takes what it needs and
// ignores the rest.
type Options struct {
	// Group sizes the commits of a grouped store (SQLite, PostgreSQL); its Logger and OnCommit
	// are that store's too.
	Group GroupConfig
	// S3 is the daemon's S3 client, for a store in S3 (which asserts the methods it calls); nil
	// when there is none.
	S3 any
	// Logger, when set, is where a store says what the daemon's log should show (nil: slog's
	// default).
	Logger *slog.Logger
}

// Opener opens the store an --out value names. The context bounds the opening (connecting,
// creating tables), not the store's life.
type Opener func(ctx context.Context, out string, opts Options) (Store, error)

// Driver is a kind of store, as it registers itself.
type Driver struct {
	// Name is the kind of store, for the log and errors: "directory", "sqlite", "postgres", "s3".
	Name string
	// Prefixes are the forms of --out this store takes ("sqlite:", "postgres://"); a driver
	// with none takes every --out that no other driver's prefix matches and that is not a URL
	// (a directory path).
	Prefixes []string
	// Form is the --out form for help and errors ("sqlite:PATH"); "" for the default.
	Form string
	// Check, when set, says what is wrong with out without opening anything (a missing path, a
	// malformed bucket), for the command line's checks.
	Check func(out string) error
	// Files is true when the driver's stores hold files as well as results: they implement
	// Copier, and --processor copy may write to them.
	Files bool
	// Open opens the store.
	Open Opener
}

var (
	driversMu sync.RWMutex
	drivers   []Driver
)

// Register makes Open serve the --out values of d, the database/sql way: a store package
// registers itself in an init function, and the daemon names none of them. It panics on a
// driver without a name or an opener, or on a prefix (or a default) registered twice.
func Register(d Driver) {
	driversMu.Lock()
	defer driversMu.Unlock()
	if d.Name == "" || d.Open == nil {
		panic("store: Register of a driver without a name or an opener")
	}
	for _, o := range drivers {
		if len(d.Prefixes) == 0 && len(o.Prefixes) == 0 {
			panic(fmt.Sprintf("store: Register %s: %s already takes the --out values that are no URL", d.Name, o.Name))
		}
		for _, p := range d.Prefixes {
			for _, q := range o.Prefixes {
				if p == q {
					panic(fmt.Sprintf("store: Register %s: prefix %q is %s's", d.Name, p, o.Name))
				}
			}
		}
	}
	drivers = append(drivers, d)
}

// Lookup returns the driver of the store out names, after its Check.
func Lookup(out string) (Driver, error) {
	if out == "" {
		return Driver{}, fmt.Errorf("out: required (%s)", forms())
	}
	driversMu.RLock()
	var found, fallback *Driver
	longest := 0
	for i, d := range drivers {
		if len(d.Prefixes) == 0 {
			fallback = &drivers[i]
		}
		for _, p := range d.Prefixes {
			if len(p) > longest && strings.HasPrefix(out, p) {
				found, longest = &drivers[i], len(p)
			}
		}
	}
	driversMu.RUnlock()
	if found == nil && !strings.Contains(out, "://") {
		found = fallback
	}
	if found == nil {
		return Driver{}, fmt.Errorf("out: %q is not a store Palleto knows (%s)", out, forms())
	}
	if found.Check != nil {
		if err := found.Check(out); err != nil {
			return Driver{}, fmt.Errorf("out: %w", err)
		}
	}
	return *found, nil
}

// Kind names the kind of store out names ("directory", "sqlite", ...), or says why none.
func Kind(out string) (string, error) {
	d, err := Lookup(out)
	return d.Name, err
}

// openTimeout bounds an Open whose context has no deadline of its own.
const openTimeout = 30 * time.Second

// Open opens the results store out names: a directory, or the form a registered driver takes
// (sqlite:PATH, postgres://..., s3://BUCKET/PREFIX, with their packages imported). Opening a
// database connects to it and creates its tables when missing; it takes 30s at most.
func Open(ctx context.Context, out string, opts Options) (Store, error) {
	d, err := Lookup(out)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	return d.Open(ctx, out, opts)
}

// forms lists the forms of --out the registered drivers take, for an error.
func forms() string {
	driversMu.RLock()
	defer driversMu.RUnlock()
	var fs []string
	dir := false
	for _, d := range drivers {
		switch {
		case len(d.Prefixes) == 0:
			dir = true
		case d.Form != "":
			fs = append(fs, d.Form)
		default:
			fs = append(fs, d.Prefixes[0]+"...")
		}
	}
	sort.Strings(fs)
	if dir {
		fs = append([]string{"a directory"}, fs...)
	}
	switch len(fs) {
	case 0:
		return "no store is registered: import one, such as github.com/palleto/palleto/store/dir"
	case 1:
		return fs[0]
	}
	return strings.Join(fs[:len(fs)-1], ", ") + ", or " + fs[len(fs)-1]
}

// Copier is a Store that also holds files: where --processor copy writes each object's
// decompressed content. Optional; the directory and S3 stores implement it.
type Copier interface {
	// CopyPath is where the copy of bucket/key goes, relative to the store (a path under the
	// output directory, a key under the prefix): deterministic, one per object.
	CopyPath(bucket, key string) string
	// WriteFrom stores all of r at rel (a CopyPath) or nothing, and returns the bytes written.
	// An error of r is returned as it is; an error of the store wraps ErrUnavailable.
	WriteFrom(rel string, r io.Reader) (int64, error)
}
