package status_test

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"

	"github.com/palleto/palleto/status"
)

// A Tracker is told what happens (the daemon's metrics do it: metrics.Metrics.SetStatus) and
// serves the page at / and the same as JSON at /status.json.
func Example() {
	t := status.New(status.Config{
		Version: "v1.0.0", Inflate: "go",
		Source:       "amqp://palleto:secret@rabbit:5672/?queue=uploads", // shown without the password
		Store:        "out",
		Dependencies: []string{"S3", "results store"},
		Counts:       func() status.Counts { return status.Counts{Received: 3, Done: 2, Failed: 1} },
	})
	t.ObjectBegan(1, "logs", "2026/12/03/app.log.gz", 4<<20)
	t.ObjectReading(1, 0).Store(1 << 20) // the reader stores its count as it reads
	t.Failure("logs", "bad.gz", "permanent", "corrupt compressed data", "deleted")
	t.DependencyChanged("S3", false, "dial tcp 10.0.0.1:443: i/o timeout")

	srv := httptest.NewServer(t.Handler())
	defer srv.Close()
	var s status.Status
	resp, err := srv.Client().Get(srv.URL + "/status.json")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(&s)
	fmt.Println(s.Source)
	fmt.Printf("done %d, failed %d\n", s.Counts.Done, s.Counts.Failed)
	o := s.InFlight[0]
	fmt.Printf("worker %d reads %s/%s: %d of %d bytes\n", o.Worker, o.Bucket, o.Key, o.BytesRead, o.Size)
	fmt.Printf("%s up=%v: %s\n", s.Dependencies[0].Name, s.Dependencies[0].Up, s.Dependencies[0].Reason)
	fmt.Printf("%s %s: %s (%s)\n", s.Failures[0].Key, s.Failures[0].Class, s.Failures[0].Error, s.Failures[0].Action)
	// Output:
	// amqp://palleto:xxxxx@rabbit:5672/?queue=uploads
	// done 2, failed 1
	// worker 1 reads logs/2026/12/03/app.log.gz: 1048576 of 4194304 bytes
	// S3 up=false: dial tcp 10.0.0.1:443: i/o timeout
	// bad.gz permanent: corrupt compressed data (deleted)
}
