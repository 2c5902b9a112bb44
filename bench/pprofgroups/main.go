// Command pprofgroups says where a CPU profile's time goes, by kind of work: each sample is
// charged to the innermost frame of its stack that belongs to a group (SigV4 signing, the rest
// of the AWS SDK, the HTTP transport, SQLite, decode, ...); a sample in no group is the runtime's
// (GC workers, the scheduler). With -n, it gives microseconds per object as well.
//
//	go run ./bench -only P2 -p2-stores sqlite -runs 1 -cpuprofile /tmp/p2_%d.prof -out ''
//	go run ./bench/pprofgroups -n 10000 /tmp/p2_1.prof /tmp/p2_2.prof
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// groups are matched against each frame, from the innermost out; the first frame that matches
// a group's prefix charges the sample to it. Order matters only within one frame.
var groups = []struct{ name, prefix string }{
	{"SDK: SigV4 signing", "github.com/aws/aws-sdk-go-v2/aws/signer/"},
	{"SDK: checksums", "github.com/aws/aws-sdk-go-v2/service/internal/checksum"},
	{"SDK: S3 client (middleware, endpoint rules, (de)serialising)", "github.com/aws/aws-sdk-go-v2/service/s3"},
	{"SDK: SQS client (middleware, (de)serialising)", "github.com/aws/aws-sdk-go-v2/service/sqs"},
	{"SDK: smithy and aws middleware (shared)", "github.com/aws/"},
	{"HTTP transport (net/http, sockets)", "net/http."},
	{"HTTP transport (net/http, sockets)", "net."},
	{"HTTP transport (net/http, sockets)", "crypto/tls."},
	{"SQLite (modernc) and database/sql", "modernc.org/"},
	{"SQLite (modernc) and database/sql", "database/sql"},
	{"PostgreSQL driver (pgx)", "github.com/jackc/"},
	{"results store (Palleto's: grouping, JSON)", "github.com/palleto/palleto/store"},
	{"decode (gzip)", "github.com/palleto/palleto/decode"},
	{"decode (gzip)", "github.com/klauspost/compress"},
	{"decode (gzip)", "compress/"},
	{"processor (line count)", "github.com/palleto/palleto/process"},
	{"notification parsing", "github.com/palleto/palleto/notify"},
	{"Palleto's SQS source (receive, delete batches, heartbeat)", "github.com/palleto/palleto/sqs"},
	{"Palleto's fetch (GetObject, checks)", "github.com/palleto/palleto/fetch"},
	{"engine and daemon (pipeline, handle, settle, log, metrics)", "github.com/palleto/palleto"},
	{"engine and daemon (pipeline, handle, settle, log, metrics)", "log/slog"},
	{"harness (bench)", "main."},
	{"runtime: GC workers", "runtime.gcBgMarkWorker"},
}

func group(stack []string) string {
	name, _ := charged(stack)
	return name
}

// charged returns the group a stack is charged to and the frame that decided it (the
// outermost frame for the runtime's).
func charged(stack []string) (string, string) {
	for _, f := range stack { // innermost first
		for _, g := range groups {
			if strings.HasPrefix(f, g.prefix) {
				return g.name, f
			}
		}
	}
	return "runtime: scheduler, netpoll, other", stack[len(stack)-1]
}

// frames, when set (-frames), names a group whose samples are told by the frame charged.
var frames string

// parse reads `go tool pprof -traces` output: blocks of a value and a stack, innermost first.
func parse(r io.Reader) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	var val time.Duration
	var stack []string
	flush := func() {
		if len(stack) > 0 {
			g, f := charged(stack)
			if frames != "" && strings.Contains(g, frames) {
				g = "  " + f
			}
			out[g] += val
		}
		stack, val = nil, 0
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "-----------+") {
			flush()
			continue
		}
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.Contains(line, ":") && len(stack) == 0 && val == 0 && !strings.HasPrefix(line, " ") {
			continue // the header: File, Type, Duration...
		}
		if len(stack) == 0 && val == 0 {
			if d, err := time.ParseDuration(fields[0]); err == nil && len(fields) >= 2 {
				val = d
				stack = append(stack, fields[1])
				continue
			}
		}
		if val > 0 {
			stack = append(stack, fields[0])
		}
	}
	flush()
	return out, sc.Err()
}

func main() {
	n := flag.Int("n", 0, "objects the profiles cover, for µs per object")
	flag.StringVar(&frames, "frames", "", "split the groups whose name holds this text by the function each sample is charged to")
	flag.Parse()
	total := map[string]time.Duration{}
	for _, file := range flag.Args() {
		cmd := exec.Command("go", "tool", "pprof", "-traces", file)
		cmd.Stderr = os.Stderr
		text, err := cmd.Output()
		if err != nil {
			fmt.Fprintln(os.Stderr, "pprofgroups:", file, err)
			os.Exit(1)
		}
		g, err := parse(strings.NewReader(string(text)))
		if err != nil {
			fmt.Fprintln(os.Stderr, "pprofgroups:", file, err)
			os.Exit(1)
		}
		for k, v := range g {
			total[k] += v
		}
	}
	var names []string
	var sum time.Duration
	for k, v := range total {
		names = append(names, k)
		sum += v
	}
	sort.Slice(names, func(i, j int) bool { return total[names[i]] > total[names[j]] })
	fmt.Println("| where | CPU | share | µs per object |\n|---|---|---|---|")
	for _, k := range names {
		per := ""
		if *n > 0 {
			per = fmt.Sprintf("%.0f", total[k].Seconds()*1e6/float64(*n))
		}
		fmt.Printf("| %s | %s | %.1f%% | %s |\n", k, total[k].Round(time.Millisecond), 100*total[k].Seconds()/sum.Seconds(), per)
	}
	per := ""
	if *n > 0 {
		per = fmt.Sprintf("%.0f", sum.Seconds()*1e6/float64(*n))
	}
	fmt.Printf("| total | %s | 100%% | %s |\n", sum.Round(time.Millisecond), per)
}
