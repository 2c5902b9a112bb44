// Command bench measures Palleto against the limits of the machine and the servers it runs on,
// as "Performance method" in DESIGN.md asks: every figure is reported next to a limit measured
// in the same run, as a ratio.
//
//	make bench                       # starts the test servers, runs everything, writes docs/PERFORMANCE.md
//	go run ./bench -quick -out ''    # tiny sizes: a smoke run (what `make test` runs)
//
// Scenarios: P1 big objects (end-to-end MB/s against in-memory gunzip + line count of the same
// bytes), P2 small objects (objects/s against a bare receive -> GetObject -> DeleteMessageBatch
// loop), P3 memory (peak RSS with 16 workers on 1 GiB objects), P4 latency (PutObject to result
// file, p50 and p99). The servers are MinIO and local-aws-sqs from scripts/testservers.sh (their
// addresses in the PALLETO_TEST_* variables of .testservers/env).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/palleto/palleto/internal/testenv"
)

// Options size the benchmark.
type Options struct {
	Runs int // repetitions of each scenario; the median is reported
	// P2Runs are P2's runs (default Runs): each times, for each store, Palleto and the bare loop
	// one after the other. P2Stores are the stores P2 runs (default P2Stores: all).
	P2Runs   int
	P2Stores []string

	BigObjects   int   // P1
	BigBytes     int64 // P1: decompressed bytes of each
	SmallObjects int   // P2
	MemObjects   int   // P3
	MemBytes     int64 // P3: decompressed bytes of each
	MemWorkers   int   // P3
	LatObjects   int   // P4
	LatRate      int   // P4: objects per second
	AWSObjects   int   // P1 as on AWS
	AWSBytes     int64 // P1 as on AWS: decompressed bytes of each

	Only       []string // scenarios to run (all when empty)
	CPUProfile string   // where to write a CPU profile of each in-process Palleto run (the last one stays)
	Bin        string   // palleto binary for P3 (built when empty)
	Log        *slog.Logger
}

// Full are the sizes of the issue; Quick are tiny, for the smoke run in the tests.
var (
	Full  = Options{Runs: 3, P2Runs: 5, BigObjects: 4, BigBytes: 256 << 20, SmallObjects: 10000, MemObjects: 16, MemBytes: 1 << 30, MemWorkers: 16, LatObjects: 200, LatRate: 20, AWSObjects: 2, AWSBytes: 500 << 20}
	Quick = Options{Runs: 1, BigObjects: 2, BigBytes: 1 << 20, SmallObjects: 100, MemObjects: 2, MemBytes: 4 << 20, MemWorkers: 16, LatObjects: 10, LatRate: 20, AWSObjects: 1, AWSBytes: 20 << 20}
)

func main() {
	quick := flag.Bool("quick", false, "tiny sizes: a smoke run of the harness")
	out := flag.String("out", "docs/PERFORMANCE.md", "file whose results section is rewritten ('' for none)")
	runs := flag.Int("runs", 0, "repetitions per scenario (default 3, P2 5, 1 with -quick)")
	p2stores := flag.String("p2-stores", "", "comma-separated stores P2 runs Palleto with (dir,tmpfs,sqlite,postgres; default all)")
	only := flag.String("only", "", "comma-separated scenarios to run (P1,P1ISAL,P1AWS,P2,P3,P4; default all)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the in-process Palleto runs (and P2's bare loops) to this file (a %d in the name: one file per run, numbered; group them with go run ./bench/pprofgroups)")
	memprofile := flag.String("memprofile", "", "write the process's heap profile (every allocation of the whole bench: look at -sample_index=alloc_objects) to this file at the end")
	small := flag.Int("small-objects", 0, "P2's object count (default 10000, 100 with -quick)")
	flag.Parse()
	env, ok := testenv.FromEnv()
	if !ok {
		fmt.Fprintln(os.Stderr, "bench: no servers: run `make bench`, or scripts/testservers.sh start && . .testservers/env")
		os.Exit(2)
	}
	o := Full
	if *quick {
		o = Quick
	}
	if *runs > 0 {
		o.Runs, o.P2Runs = *runs, *runs
	}
	if *p2stores != "" {
		o.P2Stores = strings.Split(*p2stores, ",")
		for _, s := range o.P2Stores {
			if !slices.Contains(P2Stores, s) {
				fmt.Fprintf(os.Stderr, "bench: -p2-stores: %q is none of %v\n", s, P2Stores)
				os.Exit(2)
			}
		}
	}
	o.CPUProfile = *cpuprofile
	if *small > 0 {
		o.SmallObjects = *small
	}
	if *only != "" {
		o.Only = strings.Split(*only, ",")
	}
	o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if *memprofile != "" {
		runtime.MemProfileRate = 4096
	}
	rep, err := Run(context.Background(), env, o)
	if *memprofile != "" {
		if f, err := os.Create(*memprofile); err == nil {
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	text := rep.Markdown()
	fmt.Print(text)
	if *out != "" {
		if err := writeSection(*out, text); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "bench: results written to", *out)
	}
}

// Run runs every scenario and returns the report.
func Run(ctx context.Context, env testenv.Env, o Options) (*Report, error) {
	if o.Bin == "" {
		dir, err := os.MkdirTemp("", "palleto-bench")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		o.Bin = filepath.Join(dir, "palleto")
		if out, err := exec.Command("go", "build", "-o", o.Bin, "./cmd/palleto").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	b := &bench{env: env, o: o, tb: &fatalTB{}, s3c: env.S3(), sqsc: env.SQS()}
	rep := &Report{Machine: machine(), Options: o, Started: time.Now()}
	for _, sc := range []struct {
		name string
		run  func(context.Context) ([]Row, error)
	}{{"P1", b.p1}, {"P1ISAL", b.p1isal}, {"P1AWS", b.p1aws}, {"P2", b.p2}, {"P3", b.p3}, {"P4", b.p4}} {
		if len(o.Only) > 0 && !slices.Contains(o.Only, sc.name) {
			continue
		}
		rows, err := b.protect(func() ([]Row, error) { return sc.run(ctx) })
		b.removeDirs()
		b.removeBuckets(ctx)
		if err != nil {
			return nil, err
		}
		rep.Rows = append(rep.Rows, rows...)
	}
	rep.Elapsed = time.Since(rep.Started)
	return rep, nil
}

// fatalTB lets the bench use testenv's helpers, which report through a testing.TB: a failure
// panics, and bench.protect turns the panic back into an error.
type fatalTB struct{ testing.TB }

type tbFailure string

func (*fatalTB) Helper()                           {}
func (*fatalTB) Fatalf(format string, args ...any) { panic(tbFailure(fmt.Sprintf(format, args...))) }

func (b *bench) protect(f func() ([]Row, error)) (rows []Row, err error) {
	defer func() {
		if r := recover(); r != nil {
			msg, ok := r.(tbFailure)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("%s", msg)
		}
	}()
	return f()
}

func machine() string {
	cpu := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.SplitN(string(data), "\n", 2)[0], "MemTotal: %d kB", &kb)
		mem = fmt.Sprintf(", %.0f GiB RAM", float64(kb)/(1<<20))
	}
	return fmt.Sprintf("%d × %s%s, %s %s/%s", runtime.NumCPU(), cpu, mem, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
