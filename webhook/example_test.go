package webhook_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/palleto/palleto/queue"
	_ "github.com/palleto/palleto/webhook" // registers http:// and https:// sources
)

// A webhook source is opened by its URL like any other source: a store POSTs its events, each
// is spooled before the answer, and the daemon receives them from the spool.
func Example() {
	dir, _ := os.MkdirTemp("", "webhook-example")
	defer os.RemoveAll(dir)
	src, err := queue.Open(context.Background(), "http://127.0.0.1:0/minio", queue.Options{
		Spool: filepath.Join(dir, "spool.db"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer src.Close()
	url := src.(interface{ URL() string }).URL()

	event := `{"Records":[{"eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":"uploads"},"object":{"key":"a.log","size":4,"eTag":"e"}}}]}`
	resp, err := http.Post(url, "application/json", strings.NewReader(event))
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println("POST:", resp.Status)

	msgs, _ := src.Receive(context.Background(), 10)
	for _, m := range msgs {
		fmt.Printf("received message %s, delivery %d\n", m.ID, m.ReceiveCount)
		src.Delete(m) // once its result is committed
	}
	// Output:
	// POST: 200 OK
	// received message 1, delivery 1
}
