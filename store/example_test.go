package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/palleto/palleto/store"
	_ "github.com/palleto/palleto/store/dir" // registers --out DIR
)

// A store is chosen by the form of --out; the store packages imported register the forms.
func ExampleOpen() {
	out, _ := os.MkdirTemp("", "palleto-example")
	defer os.RemoveAll(out)
	st, err := store.Open(context.Background(), filepath.Join(out, "results"), store.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer st.Close()
	done := make(chan error, 1)
	st.Put(context.Background(), store.Result{Bucket: "uploads", Key: "logs/a b.gz", ETag: "e1", Processor: "lines",
		Fields: map[string]any{"lines": 3}}, func(err error) { done <- err })
	fmt.Println("committed:", <-done)
	r, _ := st.Result(context.Background(), "uploads", "logs/a b.gz", "lines")
	fmt.Println(r.Key, r.Fields["lines"])
	// Output:
	// committed: <nil>
	// logs/a b.gz 3
}
