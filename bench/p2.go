package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"golang.org/x/sync/errgroup"

	"github.com/palleto/palleto"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/notify"
	"github.com/palleto/palleto/store/dir"
)

// mallocs is the count of heap allocations this process has made so far (what the GC's share of
// the CPU follows).
func mallocs() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Mallocs
}

// P2Stores are the ways P2 runs Palleto, as -p2-stores names them: results in a directory on
// disk, in a directory on tmpfs, in SQLite on disk, in PostgreSQL.
var P2Stores = []string{"dir", "tmpfs", "sqlite", "postgres"}

// p2Figures are one store's figures, run by run: Palleto's, and the bare loop's run next to it.
type p2Figures struct {
	pal, bare             []float64 // objects/s
	palCPU, bareCPU       []float64 // µs of CPU of the process per object
	palAllocs, bareAllocs []float64 // heap allocations of the process per object
	group                 []float64 // results per commit (grouped stores)
	perReceive            []float64 // messages per ReceiveMessage
	paged                 []float64 // objects/s with metrics and the status page open (dir only)
	// Through Kafka and RabbitMQ instead of SQS (dir only, sources.go), and their CPU per object.
	viaKafka, viaAMQP, kafkaCPU, amqpCPU []float64
}

// P2: many small objects, default settings, against a bare receive -> get -> delete loop. For
// each store, each run times a bare loop and Palleto one after the other (in turn, the bare loop
// first in even runs, Palleto first in odd ones), so that each ratio is taken against the limit
// of the same minute; CPU per object is the process's getrusage delta over the run.
func (b *bench) p2(ctx context.Context) ([]Row, error) {
	bucket := b.bucket("bench-small")
	objs := make([]object, b.o.SmallObjects)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range objs {
		g.Go(func() error {
			z := gz(logLines(rand.New(rand.NewPCG(2, uint64(i))), 5100)) // about 1 KiB of gzip, as the issue asks
			key := fmt.Sprintf("small/%05d.log.gz", i)
			objs[i] = object{key: key, etag: b.put(gctx, bucket, key, z), size: int64(len(z))}
			return nil
		})
	}
	g.Wait()
	b.o.Log.Info("P2 data ready", "objects", len(objs), "bytes_each", objs[0].size)
	def := palleto.DefaultConfig()
	disk, shm := os.TempDir(), tmpfsDir()
	pgURL := os.Getenv("PALLETO_TEST_POSTGRES_URL")
	var stores []string
	for _, s := range P2Stores {
		if (len(b.o.P2Stores) == 0 || slices.Contains(b.o.P2Stores, s)) && (s != "tmpfs" || shm != "") && (s != "postgres" || pgURL != "") {
			stores = append(stores, s)
		}
	}
	runs := b.o.P2Runs
	if runs <= 0 {
		runs = b.o.Runs
	}
	n := len(objs)
	perObject := func(cpu time.Duration) float64 { return cpu.Seconds() * 1e6 / float64(n) }
	rate := func(took time.Duration) float64 { return float64(n) / took.Seconds() }
	figs := map[string]*p2Figures{}
	var files []float64
	for run := range runs {
		cfg := palleto.DefaultConfig()
		// Short polls, here and in the bare loop: local-aws-sqs answers a long poll only once 10
		// messages are there or the wait ends, so the last messages of a run would wait out a
		// poll's whole wait, a tail that real SQS does not have. The queue is full until the end.
		cfg.SQS.WaitTime = 0
		if v := os.Getenv("BENCH_P2_LINGER"); v != "" { // for exploring; the table is made with the defaults
			cfg.SQS.DeleteLinger, _ = time.ParseDuration(v)
		}
		if v := os.Getenv("BENCH_P2_WORKERS"); v != "" {
			fmt.Sscan(v, &cfg.Engine.Workers)
		}
		if v := os.Getenv("BENCH_P2_POLLERS"); v != "" {
			fmt.Sscan(v, &cfg.Engine.Producer.Pollers)
		}
		for _, st := range stores {
			f := figs[st]
			if f == nil {
				f = &p2Figures{}
				figs[st] = f
			}
			bareRun := func() {
				took := b.bareLoop(ctx, b.queueOf(ctx, bucket, objs), n, def.Engine.Workers)
				f.bare, f.bareCPU = append(f.bare, rate(took)), append(f.bareCPU, perObject(b.lastCPU))
				f.bareAllocs = append(f.bareAllocs, float64(b.lastMallocs)/float64(n))
			}
			palRun := func() {
				out := map[string]string{"dir": disk, "tmpfs": shm, "sqlite": "sqlite:" + disk}[st]
				if st == "postgres" {
					out = b.freshPostgres(pgURL)
				}
				cfg.SQS.QueueURL = b.queueOf(ctx, bucket, objs)
				took, sum := b.runDaemon(ctx, cfg, out, n)
				f.pal, f.palCPU = append(f.pal, rate(took)), append(f.palCPU, perObject(b.lastCPU))
				f.palAllocs = append(f.palAllocs, float64(b.lastMallocs)/float64(n))
				f.group, f.perReceive = append(f.group, sum.GroupSize()), append(f.perReceive, b.lastSQS.perReceive())
			}
			pagedRun := func() { // the same with the status page open in a browser (statuspage.go)
				if st != "dir" {
					return
				}
				cfg.SQS.QueueURL = b.queueOf(ctx, bucket, objs)
				b.withPage = true
				took, _ := b.runDaemon(ctx, cfg, disk, n)
				b.withPage = false
				f.paged = append(f.paged, rate(took))
			}
			sourceRun := func(kind string) { // the same objects through another source (sources.go)
				kafkaBrokers, amqpURL := sourceBrokers()
				if st != "dir" || (kind == "kafka" && kafkaBrokers == "") || (kind == "amqp" && amqpURL == "") {
					return
				}
				var r float64
				var err error
				if kind == "kafka" {
					r, err = b.p2Kafka(ctx, cfg, kafkaBrokers, bucket, objs, disk)
					f.viaKafka, f.kafkaCPU = append(f.viaKafka, r), append(f.kafkaCPU, perObject(b.lastCPU))
				} else {
					r, err = b.p2AMQP(ctx, cfg, amqpURL, bucket, objs, disk)
					f.viaAMQP, f.amqpCPU = append(f.viaAMQP, r), append(f.amqpCPU, perObject(b.lastCPU))
				}
				if err != nil {
					b.tb.Fatalf("P2 through %s: %v", kind, err)
				}
			}
			if run%2 == 0 {
				bareRun()
				palRun()
				pagedRun()
				sourceRun("kafka")
				sourceRun("amqp")
			} else {
				sourceRun("amqp")
				sourceRun("kafka")
				pagedRun()
				palRun()
				bareRun()
			}
			b.o.Log.Info("P2 run", "run", run+1, "store", st, "palleto_per_s", last(f.pal), "bare_per_s", last(f.bare),
				"ratio", last(f.pal)/last(f.bare), "palleto_cpu_us", last(f.palCPU), "bare_cpu_us", last(f.bareCPU),
				"cpu_ratio", last(f.palCPU)/last(f.bareCPU), "palleto_allocs", last(f.palAllocs), "bare_allocs", last(f.bareAllocs), "group", last(f.group))
		}
		if slices.Contains(stores, "dir") {
			files = append(files, rate(b.durableFiles(disk, n, def.Engine.Workers)))
		}
	}
	return p2Rows(figs, files, len(objs), objs[0].size, disk, shm), nil
}

// p2Rows makes P2's rows: for each store its rate and its CPU per object, each against the bare
// loop's of the same runs.
func p2Rows(figs map[string]*p2Figures, files []float64, n int, size int64, disk, shm string) []Row {
	def := palleto.DefaultConfig()
	var rows []Row
	for _, st := range P2Stores {
		f := figs[st]
		if f == nil {
			continue
		}
		bareLimit := fmt.Sprintf("%.0f objects/s bare receive→get→delete loop (4 receivers, %d GETs at a time, deletes of 10), runs next to Palleto's", median(f.bare), def.Engine.Workers)
		runs := "; run by run " + perRun(f.pal, f.bare, "%.2f")
		var row Row
		switch st {
		case "dir":
			row = Row{Scenario: "P2 small objects", Target: 0.90,
				Setting: fmt.Sprintf("%d × %d B gzip, defaults (%d workers, %d pollers, prefetch %d; %.1f messages per receive), results on %s",
					n, size, def.Engine.Workers, def.Engine.Producer.Pollers, def.Engine.Prefetch, median(f.perReceive), fsName(disk))}
		case "tmpfs":
			row = Row{Scenario: "P2 without the disk", Setting: fmt.Sprintf("the same, results on %s, in memory: what the engine, SQS and S3 allow", fsName(shm))}
		case "sqlite":
			row = Row{Scenario: "P2 small objects, SQLite", Target: 0.90,
				Setting: fmt.Sprintf("%d × %d B gzip, --out sqlite: on %s, defaults (groups of up to %d or %s; %.0f results per commit seen; %.1f messages per receive)",
					n, size, fsName(disk), def.Commit.Size, def.Commit.Timeout, median(f.group), median(f.perReceive))}
		case "postgres":
			row = Row{Scenario: "P2 small objects, PostgreSQL",
				Setting: fmt.Sprintf("the same, --out postgres:// (Debian's PostgreSQL 15 on this machine, on %s; %.0f results per commit seen)", fsName(disk), median(f.group))}
		}
		row.Setting += runs
		row.Value, row.Limit, row.Ratio = fmt.Sprintf("%.0f objects/s", median(f.pal)), bareLimit, ratio(f.pal, f.bare)
		rows = append(rows, row)
		cpu := Row{Scenario: map[string]string{"dir": "P2 CPU per object", "tmpfs": "P2 CPU per object, tmpfs", "sqlite": "P2 CPU per object, SQLite",
			"postgres": "P2 CPU per object, PostgreSQL"}[st],
			Setting: "user + system CPU of the whole process (getrusage) over the objects, against the bare loop's in the run next to it; ratio run by run " + perRun(f.palCPU, f.bareCPU, "%.2f"),
			Value:   fmt.Sprintf("%.0f µs", median(f.palCPU)), Limit: fmt.Sprintf("%.0f µs the bare loop's", median(f.bareCPU)), Ratio: ratio(f.palCPU, f.bareCPU)}
		if st == "sqlite" {
			cpu.Max = 1.2
		}
		rows = append(rows, cpu)
		if len(f.viaKafka)+len(f.viaAMQP) > 0 {
			rows = append(rows, sourceRows(median(f.pal), f.pal, f.viaKafka, f.viaAMQP, map[string][]float64{"sqs": f.palCPU, "kafka": f.kafkaCPU, "amqp": f.amqpCPU})...)
		}
		if len(f.paged) > 0 {
			rows = append(rows, Row{Scenario: "P2 small objects, status page open",
				Setting: "the same, with metrics and the status page open in headless Chromium (refreshing every 2 s); run by run " + perRun(f.paged, f.pal, "%.2f"),
				Value:   fmt.Sprintf("%.0f objects/s", median(f.paged)), Limit: fmt.Sprintf("%.0f objects/s, P2 without metrics or page in the same runs", median(f.pal)), Ratio: ratio(f.paged, f.pal)})
		}
	}
	if f := figs["dir"]; f != nil && len(files) > 0 {
		// The bare loop and the durable files each keep the 2 cores busy; sharing them, their costs
		// per object add up. That sum is what one durable result per object allows at best.
		p, l, fl := median(f.pal), median(f.bare), median(files)
		both := 1 / (1/l + 1/fl)
		rows = append(rows, Row{Scenario: "P2 the disk alone", Setting: fmt.Sprintf("%d durable result files (temp, fsync, rename, fsync dir), %d writers, no SQS, no S3, on %s",
			n, def.Engine.Workers, fsName(disk)), Value: fmt.Sprintf("%.0f files/s", fl),
			Limit: fmt.Sprintf("Palleto's %.0f objects/s against %.0f/s, the bare loop and these files one after the other (1 / (1/%.0f + 1/%.0f))", p, both, l, fl), Ratio: p / both})
	}
	return rows
}

// perRun lists a[i]/b[i], run by run.
func perRun(a, b []float64, format string) string {
	var rs []string
	for i := range min(len(a), len(b)) {
		if b[i] > 0 {
			rs = append(rs, fmt.Sprintf(format, a[i]/b[i]))
		}
	}
	return strings.Join(rs, ", ")
}

// freshPostgres creates a new database on the server of url and returns its URL.
func (b *bench) freshPostgres(url string) string {
	return testenv.PostgresDatabase(b.tb)
}

// durableFiles writes n small results with the directory store Palleto uses (temp file, fsync, rename,
// fsync of the directory), from conc goroutines, into a new directory under base: the rate the
// disk allows for P2's results, with nothing else running.
func (b *bench) durableFiles(base string, n, conc int) time.Duration {
	d, err := dir.Open(b.tempDir(base, "palleto-bench-files"))
	if err != nil {
		b.tb.Fatalf("%v", err)
	}
	defer d.Close()
	var next atomic.Int64
	g := errgroup.Group{}
	start := time.Now()
	for range conc {
		g.Go(func() error {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				now := time.Now()
				r := dir.Result{Bucket: "bench-small", Key: fmt.Sprintf("small/%05d.log.gz", i), ETag: "e", Processor: "lines",
					StartedAt: now, FinishedAt: now, Fields: map[string]any{"lines": 28, "bytes": 3000}}
				if _, err := d.WriteResult(r); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.tb.Fatalf("durable files: %v", err)
	}
	return time.Since(start)
}

// bareLoop is the least any consumer must do: conc loops of receive up to 10, GetObject each
// (body read and dropped), DeleteMessageBatch. No engine, no decompression, no result.
func (b *bench) bareLoop(ctx context.Context, url string, n, conc int) time.Duration {
	// The same shape as Palleto's defaults, with nothing else: 4 receivers of 10 messages
	// feeding a buffer of 40, conc workers that GET each object to the end, and deletes in
	// batches of 10. What the servers and the SDK allow, not a strawman.
	for _, kv := range b.env.AWSEnv() { // as startDaemon: the clients come from the environment
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	if b.o.CPUProfile != "" { // numbered with Palleto's runs: compare them with bench/pprofgroups
		if f, err := os.Create(numbered(b.o.CPUProfile, &b.profiles)); err == nil {
			pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	runtime.GC() // the garbage of the runs before is theirs
	cpu0, m0 := testenv.ProcessCPU(), mallocs()
	sqsc, s3c, err := palleto.AWSClients(ctx, conc+4)
	if err != nil {
		b.tb.Fatalf("%v", err)
	}
	var done atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) { firstErr.CompareAndSwap(nil, err) }
	msgs := make(chan sqstypes.Message, 40)
	receipts := make(chan *string, 64)
	stop := make(chan struct{})
	start := time.Now()
	var rwg, wwg, dwg sync.WaitGroup
	for range 4 {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10, WaitTimeSeconds: 0})
				if err != nil {
					fail(err)
					return
				}
				for _, m := range r.Messages {
					select {
					case msgs <- m:
					case <-stop:
						return
					}
				}
			}
		}()
	}
	for range conc {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			for {
				var m sqstypes.Message
				select {
				case m = <-msgs:
				case <-stop:
					return
				}
				note, err := notify.Parse([]byte(aws.ToString(m.Body)))
				if err != nil || len(note.Records) != 1 {
					fail(fmt.Errorf("bare loop: %v", err))
					return
				}
				rec := note.Records[0]
				obj, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: &rec.Bucket, Key: &rec.Key})
				if err != nil {
					fail(err)
					return
				}
				io.Copy(io.Discard, obj.Body)
				obj.Body.Close()
				receipts <- m.ReceiptHandle
			}
		}()
	}
	dwg.Add(1)
	go func() {
		defer dwg.Done()
		var batch []sqstypes.DeleteMessageBatchRequestEntry
		var calls sync.WaitGroup
		defer calls.Wait()
		slots := make(chan struct{}, 4) // 4 delete calls at once, as Palleto's deleter
		var queued int64
		flush := func() {
			if len(batch) == 0 {
				return
			}
			entries := batch
			batch = nil
			queued += int64(len(entries))
			slots <- struct{}{}
			calls.Add(1)
			go func() {
				defer func() { <-slots; calls.Done() }()
				if _, err := sqsc.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: entries}); err != nil {
					fail(err)
				}
				done.Add(int64(len(entries)))
			}()
		}
		for queued+int64(len(batch)) < int64(n) && firstErr.Load() == nil {
			select {
			case r := <-receipts:
				batch = append(batch, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(len(batch))), ReceiptHandle: r})
				if len(batch) == 10 {
					flush()
				}
			case <-time.After(10 * time.Millisecond):
				flush()
			}
		}
		flush()
	}()
	dwg.Wait()
	took := time.Since(start)
	b.lastCPU = testenv.ProcessCPU() - cpu0
	b.lastMallocs = mallocs() - m0
	close(stop)
	go func() { // the workers may wait on a full receipts channel: drain it until they are gone
		for range receipts {
		}
	}()
	wwg.Wait()
	rwg.Wait()
	close(receipts)
	if err := firstErr.Load(); err != nil {
		b.tb.Fatalf("bare loop: %v", err)
	}
	return took
}
