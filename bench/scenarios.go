package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	rtrace "runtime/trace"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/klauspost/compress/gzip"

	"github.com/palleto/palleto"
	"github.com/palleto/palleto/decode"
	"github.com/palleto/palleto/devstack"
	"github.com/palleto/palleto/fetch"
	"github.com/palleto/palleto/internal/faultproxy"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/metrics"
	"github.com/palleto/palleto/process"
	"golang.org/x/sync/errgroup"
)

type bench struct {
	env  testenv.Env
	o    Options
	tb   *fatalTB
	s3c  *s3.Client
	sqsc *sqs.Client

	dirs        []string      // output directories, removed when the scenario ends (see tempDir)
	buckets     []string      // buckets made, emptied and removed when the scenario ends
	lastSQS     *countingSQS  // the SQS requests of the last in-process Palleto run
	lastCPU     time.Duration // the process's CPU time in the last in-process Palleto run or bare loop
	lastMallocs uint64        // and its heap allocations
	profiles    int           // CPU profiles written so far, for a -cpuprofile name with %d
	traces      int           // traces written so far, for a BENCH_TRACE name with %d
	goTraces    int           // the same for BENCH_GOTRACE
	s3Endpoint  string        // when set, the S3 endpoint of in-process runs (a fault proxy)
	withPage    bool          // in-process runs have metrics and their status page open (statuspage.go)
	pageHow     string        // how the page was open in the last such run

	// source, when set, is what in-process runs read (palleto.Deps.Source) instead of SQS
	// (sources.go); the run ends at its n-th delete.
	source *countingSource
}

// tempDir makes an output directory under base (the system's temporary directory when empty).
// It is removed only when the scenario ends: deleting thousands of files between two runs makes
// the next run's file creations slower on some filesystems (ext4 without a journal skips inodes
// freed in the last seconds, one by one), which would charge one run for another's cleanup.
func (b *bench) tempDir(base, prefix string) string {
	dir, err := os.MkdirTemp(base, prefix)
	if err != nil {
		b.tb.Fatalf("%v", err)
	}
	b.dirs = append(b.dirs, dir)
	return dir
}

func (b *bench) removeDirs() {
	for _, d := range b.dirs {
		os.RemoveAll(d)
	}
	b.dirs = nil
}

// object is an uploaded object and what it decompresses to.
type object struct {
	key, etag   string
	size, plain int64
	gz          []byte // kept only where the in-memory limit needs it
}

// logLines writes about n bytes of JSON-lines access logs.
func logLines(r *rand.Rand, n int64) []byte {
	var b bytes.Buffer
	b.Grow(int(n) + 256)
	paths := []string{"/", "/api/v1/items", "/api/v1/items/42", "/static/app.js", "/login", "/healthz"}
	for i := 0; int64(b.Len()) < n; i++ {
		fmt.Fprintf(&b, `{"ts":%d,"ip":"10.%d.%d.%d","method":"GET","path":"%s","status":%d,"bytes":%d,"ms":%d}`+"\n",
			1469059200+i, r.IntN(256), r.IntN(256), r.IntN(256), paths[r.IntN(len(paths))], []int{200, 200, 200, 304, 404, 500}[r.IntN(6)], r.IntN(1e5), r.IntN(900))
	}
	return b.Bytes()
}

func gz(plain []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(plain)
	w.Close()
	return b.Bytes()
}

func (b *bench) bucket(prefix string) string {
	name := testenv.Name(prefix)
	if _, err := b.s3c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &name}); err != nil {
		b.tb.Fatalf("CreateBucket %s: %v", name, err)
	}
	b.buckets = append(b.buckets, name)
	return name
}

// removeBuckets empties and removes the buckets made: left in place, gigabytes of them would
// keep MinIO's background scanner busy (a sixth of a core here) in every later run.
func (b *bench) removeBuckets(ctx context.Context) {
	for _, name := range b.buckets {
		p := s3.NewListObjectsV2Paginator(b.s3c, &s3.ListObjectsV2Input{Bucket: &name})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				b.o.Log.Warn("bench bucket not emptied", "bucket", name, "err", err)
				break
			}
			if len(page.Contents) == 0 {
				continue
			}
			ids := make([]s3types.ObjectIdentifier, len(page.Contents))
			for i, o := range page.Contents {
				ids[i] = s3types.ObjectIdentifier{Key: o.Key}
			}
			if _, err := b.s3c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: &name, Delete: &s3types.Delete{Objects: ids, Quiet: aws.Bool(true)}}); err != nil {
				b.o.Log.Warn("bench objects not deleted", "bucket", name, "err", err)
			}
		}
		if _, err := b.s3c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &name}); err != nil {
			b.o.Log.Warn("bench bucket not removed", "bucket", name, "err", err)
		}
	}
	b.buckets = nil
}

func (b *bench) put(ctx context.Context, bucket, key string, body []byte) string {
	out, err := b.s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body)})
	if err != nil {
		b.tb.Fatalf("PutObject %s: %v", key, err)
	}
	return strings.Trim(aws.ToString(out.ETag), `"`)
}

// queueOf creates a queue holding one S3 notification per object.
func (b *bench) queueOf(ctx context.Context, bucket string, objs []object) string {
	url := testenv.NewQueue(b.tb, b.sqsc, testenv.Name("bench"), nil)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := 0; i < len(objs); i += 10 {
		batch := objs[i:min(i+10, len(objs))]
		g.Go(func() error {
			var entries []sqstypes.SendMessageBatchRequestEntry
			for j, o := range batch {
				entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(j)),
					MessageBody: aws.String(devstack.EventBody("ObjectCreated:Put", bucket, o.key, "", o.etag, o.size))})
			}
			_, err := b.sqsc.SendMessageBatch(gctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.tb.Fatalf("SendMessageBatch: %v", err)
	}
	return url
}

// runDaemon runs Palleto in this process, on clients built the way `palleto run` builds them,
// until n messages are deleted (their results committed); it returns the time from Run to the
// n-th delete. Results go to a new directory under outBase ("" for the system's temporary
// directory), or, when outBase is a store form (sqlite:DIR, a postgres:// URL), to that store:
// a new database file in DIR, the database of the URL.
func (b *bench) runDaemon(ctx context.Context, cfg palleto.Config, outBase string, n int) (time.Duration, palleto.Summary) {
	switch {
	case strings.HasPrefix(outBase, "sqlite:"):
		cfg.OutDir = "sqlite:" + filepath.Join(b.tempDir(strings.TrimPrefix(outBase, "sqlite:"), "palleto-bench-db"), "results.db")
	case strings.HasPrefix(outBase, "postgres"):
		cfg.OutDir = outBase
	default:
		cfg.OutDir = b.tempDir(outBase, "palleto-bench-out")
	}
	if v := os.Getenv("BENCH_PREFETCH"); v != "" { // for exploring; the table is made with the defaults
		fmt.Sscan(v, &cfg.Engine.Prefetch)
	}
	if p := os.Getenv("BENCH_TRACE"); p != "" { // for exploring: the flow in words, with times (a %d in the name: one file per run)
		p = numbered(p, &b.traces)
		if f, err := os.Create(p); err == nil {
			defer f.Close()
			cfg.Trace = f
		}
	}
	if p := os.Getenv("BENCH_GOTRACE"); p != "" { // for exploring: Go's execution trace (go tool trace), a %d as for BENCH_TRACE
		if f, err := os.Create(numbered(p, &b.goTraces)); err == nil {
			rtrace.Start(f)
			defer func() { rtrace.Stop(); f.Close() }()
		}
	}
	if b.o.CPUProfile != "" {
		f, err := os.Create(numbered(b.o.CPUProfile, &b.profiles))
		if err == nil {
			pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	runtime.GC() // the garbage of the runs before is theirs
	cpu0, m0 := testenv.ProcessCPU(), mallocs()
	d, start, stop := b.startDaemon(ctx, cfg)
	var took time.Duration
	for {
		s := d.Stats()
		if b.source != nil {
			s.Deleted = b.source.deleted.Load()
		}
		if s.Deleted >= int64(n) || s.Failed > 0 {
			took = time.Since(start)
			b.lastCPU = testenv.ProcessCPU() - cpu0
			b.lastMallocs = mallocs() - m0
			break
		}
		time.Sleep(time.Millisecond)
	}
	if s := d.Stats(); s.Failed > 0 {
		b.tb.Fatalf("%d objects failed in a benchmark run", s.Failed)
	}
	stop()
	return took, d.Stats()
}

// numbered returns name with its %d, if any, replaced by the next of count: one file per run.
func numbered(name string, count *int) string {
	if !strings.Contains(name, "%d") {
		return name
	}
	*count++
	return fmt.Sprintf(name, *count)
}

// startDaemon runs Palleto in this process, on clients built as `palleto run` builds them
// (palleto.AWSClients, from the servers' standard environment variables); stop ends the run and
// waits for it. started is when Run was called.
func (b *bench) startDaemon(ctx context.Context, cfg palleto.Config) (d *palleto.Daemon, started time.Time, stop func()) {
	for _, kv := range b.env.AWSEnv() {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	if b.s3Endpoint != "" {
		os.Setenv("AWS_ENDPOINT_URL_S3", b.s3Endpoint)
		defer os.Setenv("AWS_ENDPOINT_URL_S3", b.env.S3Endpoint)
	}
	sqsc, s3c, err := palleto.AWSClients(ctx, cfg.Engine.Workers+cfg.Engine.Producer.Pollers)
	if err != nil {
		b.tb.Fatalf("%v", err)
	}
	counted := &countingSQS{API: sqsc}
	b.lastSQS = counted
	var met *metrics.Metrics
	if b.withPage {
		met = metrics.New()
	}
	deps := palleto.Deps{SQS: counted, S3: s3c, Logger: quiet, Metrics: met}
	if b.source != nil {
		deps.Source = b.source
	}
	d, err = palleto.New(cfg, deps)
	if err != nil {
		b.tb.Fatalf("%v", err)
	}
	closePage := func() {}
	if met != nil {
		b.pageHow, closePage = b.openPage(ctx, d, met)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	started = time.Now()
	go func() { defer close(done); d.Run(runCtx) }()
	return d, started, func() { cancel(); <-done; closePage(); b.o.Log.Info("SQS requests", "run", counted.String()) }
}

func last(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	return xs[len(xs)-1]
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// ratio is the median of the per-run ratios a[i]/b[i]: each run's value against the limit
// measured in that same run, so that a machine slower in one run than in another does not
// skew the ratio.
func ratio(a, b []float64) float64 {
	rs := make([]float64, 0, len(a))
	for i := range min(len(a), len(b)) {
		if b[i] > 0 {
			rs = append(rs, a[i]/b[i])
		}
	}
	return median(rs)
}

// libraryLimit is the best the machine and the library do with big gzip objects: klauspost's
// gzip reader (every member) over the bytes in memory, 256 KiB reads, newlines counted with
// bytes.Count, one core. It is measured in each run, next to Palleto.
func libraryLimit(objs []object) (mbps float64, err error) {
	buf := make([]byte, 256<<10)
	var total int64
	start := time.Now()
	for _, o := range objs {
		n, err := gunzipCount(bytes.NewReader(o.gz), buf, o.key)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return float64(total) / 1e6 / time.Since(start).Seconds(), nil
}

// gunzipCount reads every member of the gzip stream in r with klauspost's reader, in reads of
// len(buf), counts its newlines with bytes.Count, and returns its decompressed size.
func gunzipCount(r io.Reader, buf []byte, key string) (int64, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return 0, err
	}
	var total int64
	lines := 0
	for {
		n, err := zr.Read(buf)
		lines += bytes.Count(buf[:n], []byte{'\n'})
		total += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	if lines == 0 {
		return 0, fmt.Errorf("no lines in %s", key)
	}
	return total, nil
}

// engineFree is Palleto's own path for big objects without the engine: each object fetched as the
// daemon fetches it (the default ranges and budget, on clients built as `palleto run` builds
// them), decoded and its lines counted, by readers goroutines at once. Set between the library's
// limit and Palleto, it tells what S3's socket costs on this machine from what the engine costs.
func (b *bench) engineFree(ctx context.Context, bucket string, objs []object, readers int) (float64, error) {
	_, s3c, err := palleto.AWSClients(ctx, 2*readers)
	if err != nil {
		return 0, err
	}
	def := palleto.DefaultConfig()
	f := fetch.New(s3c)
	f.PartSize, f.PartsInFlight, f.ReadAhead = def.PartSize, def.PartsInFlight, fetch.NewReadAhead(def.ReadAhead)
	if v := os.Getenv("BENCH_P1_PART_SIZE"); v != "" { // for exploring; the table is made with the defaults
		fmt.Sscan(v, &f.PartSize)
	}
	var ahead atomic.Int64
	f.OnRange = func(ri fetch.RangeInfo) {
		if ri.Ahead {
			ahead.Add(1)
		}
	}
	defer func() { b.o.Log.Info("no engine", "readers", readers, "ranges_ahead", ahead.Load()) }()
	return shareObjects(objs, readers, func(o object) (int64, error) {
		obj, err := f.Open(ctx, fetch.Request{Bucket: bucket, Key: o.key, Size: o.size})
		if err != nil {
			return 0, err
		}
		defer obj.Body.Close()
		dr, err := decode.Open(obj.Body, decode.Options{})
		if err != nil {
			return 0, err
		}
		defer dr.Close()
		cr := &countBytes{r: dr}
		lines, err := process.CountLines(ctx, cr)
		if err == nil && lines == 0 {
			err = fmt.Errorf("no lines in %s", o.key)
		}
		return cr.n, err
	})
}

// sdkLoop is the same objects read by the AWS SDK alone, one GetObject stream each, into
// klauspost's gzip reader through a 256 KiB buffer, 256 KiB reads, newlines counted: the best a
// plain reader of S3's socket does on this machine, with no Palleto code on its path; with
// readers > 1, what the machine does for --workers N.
func (b *bench) sdkLoop(ctx context.Context, bucket string, objs []object, readers int) (float64, error) {
	_, s3c, err := palleto.AWSClients(ctx, 2*readers)
	if err != nil {
		return 0, err
	}
	return shareObjects(objs, readers, func(o object) (int64, error) {
		out, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &o.key})
		if err != nil {
			return 0, err
		}
		defer out.Body.Close()
		return gunzipCount(bufio.NewReaderSize(out.Body, 256<<10), make([]byte, 256<<10), o.key)
	})
}

// shareObjects calls read for every object, from readers goroutines at once, each taking the next
// object left, and returns the rate in MB/s of the bytes read returned.
func shareObjects(objs []object, readers int, read func(object) (int64, error)) (float64, error) {
	var total, next atomic.Int64
	var g errgroup.Group
	start := time.Now()
	for range readers {
		g.Go(func() error {
			for i := next.Add(1) - 1; i < int64(len(objs)); i = next.Add(1) - 1 {
				n, err := read(objs[i])
				if err != nil {
					return err
				}
				total.Add(n)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return float64(total.Load()) / 1e6 / time.Since(start).Seconds(), nil
}

type countBytes struct {
	r io.Reader
	n int64
}

func (c *countBytes) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// bigObjects puts n gzip objects of about plainBytes each, in members gzip members.
func (b *bench) bigObjects(ctx context.Context, bucket string, n int, plainBytes int64, members int, seed uint64) (objs []object, plainTotal int64) {
	for i := range n {
		plain := logLines(rand.New(rand.NewPCG(seed, uint64(i))), plainBytes)
		var z []byte
		for m := range members {
			z = append(z, gz(plain[int64(m)*int64(len(plain))/int64(members):int64(m+1)*int64(len(plain))/int64(members)])...)
		}
		key := fmt.Sprintf("big/%d.log.gz", i)
		objs = append(objs, object{key: key, etag: b.put(ctx, bucket, key, z), size: int64(len(z)), plain: int64(len(plain)), gz: z})
		plainTotal += int64(len(plain))
	}
	return objs, plainTotal
}

// P1: big gzip objects, 1 and 2 workers, default flags otherwise, against the library's limit.
func (b *bench) p1(ctx context.Context) ([]Row, error) {
	bucket := b.bucket("bench-big")
	objs, plainTotal := b.bigObjects(ctx, bucket, b.o.BigObjects, b.o.BigBytes, 1, 1)
	b.o.Log.Info("P1 data ready", "objects", len(objs), "decompressed_MB", plainTotal/1e6)
	for _, kv := range b.env.AWSEnv() { // the clients of the loops without the engine read them
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	// Each run measures the limit before and after the others, and takes the mean: this VM's
	// speed drifts by 10-20% over a minute (slower at first), which a limit measured once, a
	// dozen seconds before the last row, charges to one row or another.
	var mem, sdk, sdk2, bare, bare2, w1, w2 []float64
	for run := range b.o.Runs {
		before, err := libraryLimit(objs)
		if err != nil {
			return nil, err
		}
		for _, ref := range []struct {
			loop    func(context.Context, string, []object, int) (float64, error)
			readers int
			to      *[]float64
		}{{b.sdkLoop, 1, &sdk}, {b.sdkLoop, 2, &sdk2}, {b.engineFree, 1, &bare}, {b.engineFree, 2, &bare2}} {
			mbps, err := ref.loop(ctx, bucket, objs, ref.readers)
			if err != nil {
				return nil, err
			}
			*ref.to = append(*ref.to, mbps)
		}
		workerCounts := []int{1, 2}
		if os.Getenv("BENCH_P1_ONE") != "" { // for exploring (a profile of --workers 1): the table is made with both
			workerCounts = []int{2, 1}
		}
		for _, workers := range workerCounts {
			cfg := palleto.DefaultConfig()
			cfg.SQS.QueueURL = b.queueOf(ctx, bucket, objs)
			cfg.SQS.WaitTime = 0 // local-aws-sqs holds a poll for fewer than 10 messages until its wait ends
			cfg.Engine.Workers = workers
			if v := os.Getenv("BENCH_P1_PART_SIZE"); v != "" { // for exploring; the table is made with the defaults
				fmt.Sscan(v, &cfg.PartSize)
			}
			_, sum := b.runDaemon(ctx, cfg, "", len(objs))
			mbs := float64(plainTotal) / 1e6 / sum.Busy.Seconds() // from the first message to the last settled, as the summary's rate
			if workers == 1 {
				w1 = append(w1, mbs)
			} else {
				w2 = append(w2, mbs)
			}
		}
		after, err := libraryLimit(objs)
		if err != nil {
			return nil, err
		}
		mem = append(mem, (before+after)/2)
		b.o.Log.Info("P1 run", "run", run+1, "library_MBps", mem[run], "library_before", before, "library_after", after, "sdk_MBps", sdk[run], "sdk2_MBps", sdk2[run], "no_engine_MBps", bare[run], "no_engine2_MBps", bare2[run], "workers1_MBps", w1[run], "workers2_MBps", w2[run])
	}
	m, one, two := median(mem), median(w1), median(w2)
	set := fmt.Sprintf("%d × %d MiB JSON-lines gzip on loopback, defaults", len(objs), b.o.BigBytes>>20)
	return []Row{
		{Scenario: "P1 big objects", Setting: set + ", --workers 1", Value: fmt.Sprintf("%.0f MB/s", one),
			Limit: fmt.Sprintf("%.0f MB/s klauspost gunzip + bytes.Count of the same bytes in memory, 256 KiB reads, 1 core (mean of a measure before and after the run)", m), Ratio: ratio(w1, mem), Target: 0.90},
		{Scenario: "P1 plain SDK reader", Setting: set + ": one GetObject stream per object into klauspost's gzip reader (256 KiB buffer and reads), no Palleto code", Value: fmt.Sprintf("%.0f MB/s", median(sdk)),
			Limit: fmt.Sprintf("%.0f MB/s klauspost gunzip + bytes.Count in memory", m), Ratio: ratio(sdk, mem)},
		{Scenario: "P1 without the engine", Setting: set + ": Palleto's fetch (default ranges), decode and line count, object after object, no SQS", Value: fmt.Sprintf("%.0f MB/s", median(bare)),
			Limit: fmt.Sprintf("%.0f MB/s the plain SDK reader", median(sdk)), Ratio: ratio(bare, sdk)},
		{Scenario: "P1 big objects", Setting: set + ", --workers 1, against the path without the engine", Value: fmt.Sprintf("%.0f MB/s", one),
			Limit: fmt.Sprintf("%.0f MB/s the same objects without the engine", median(bare)), Ratio: ratio(w1, bare)},
		{Scenario: "P1 big objects", Setting: set + ", --workers 2", Value: fmt.Sprintf("%.0f MB/s", two),
			Limit: fmt.Sprintf("%.0f MB/s with --workers 1", one), Ratio: ratio(w2, w1), Target: 1.7},
		{Scenario: "P1 plain SDK readers", Setting: set + ": 2 plain SDK readers at once, sharing the objects", Value: fmt.Sprintf("%.0f MB/s", median(sdk2)),
			Limit: fmt.Sprintf("%.0f MB/s one plain SDK reader", median(sdk)), Ratio: ratio(sdk2, sdk)},
		{Scenario: "P1 without the engine", Setting: set + ": 2 readers of Palleto's path at once, sharing the objects", Value: fmt.Sprintf("%.0f MB/s", median(bare2)),
			Limit: fmt.Sprintf("%.0f MB/s 2 plain SDK readers", median(sdk2)), Ratio: ratio(bare2, sdk2)},
	}, nil
}

// P1 with ISA-L: the same big objects, --workers 1, run by the pure-Go build and by the ISA-L
// build (`-tags isal`) of palleto, side by side; each against its own inflater's in-memory limit
// (bench/inflate, built both ways).
func (b *bench) p1isal(ctx context.Context) ([]Row, error) {
	bucket := b.bucket("bench-isal")
	objs, plainTotal := b.bigObjects(ctx, bucket, b.o.BigObjects, b.o.BigBytes, 1, 11)
	dir, err := os.MkdirTemp("", "palleto-bench-isal")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	var files []string
	for i, o := range objs {
		f := filepath.Join(dir, fmt.Sprintf("%d.gz", i))
		if err := os.WriteFile(f, o.gz, 0o644); err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	bins := map[string]string{"go": b.o.Bin, "isal": filepath.Join(dir, "palleto-isal")}
	limits := map[string]string{"go": filepath.Join(dir, "inflate-go"), "isal": filepath.Join(dir, "inflate-isal")}
	for _, build := range []struct{ out, tags, pkg string }{
		{bins["isal"], "isal", "./cmd/palleto"}, {limits["go"], "", "./bench/inflate"}, {limits["isal"], "isal", "./bench/inflate"},
	} {
		if out, err := exec.Command("go", "build", "-tags", build.tags, "-o", build.out, build.pkg).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build -tags %q %s (ISA-L needs Debian's libisal-dev): %v\n%s", build.tags, build.pkg, err, out)
		}
	}
	limit := map[string][]float64{}
	run := map[string][]float64{}
	for r := range b.o.Runs {
		for _, which := range []string{"go", "isal"} {
			out, err := exec.Command(limits[which], files...).Output()
			if err != nil {
				return nil, fmt.Errorf("inflate limit (%s): %v", which, err)
			}
			var mbs float64
			fmt.Sscan(string(out), &mbs)
			limit[which] = append(limit[which], mbs)
			mbs, err = b.runBinary(ctx, bins[which], b.queueOf(ctx, bucket, objs), len(objs), "--workers", "1")
			if err != nil {
				return nil, err
			}
			run[which] = append(run[which], mbs)
		}
		b.o.Log.Info("P1 ISA-L run", "run", r+1, "go_limit", last(limit["go"]), "go_MBps", last(run["go"]), "isal_limit", last(limit["isal"]), "isal_MBps", last(run["isal"]))
	}
	g, i := median(run["go"]), median(run["isal"])
	set := fmt.Sprintf("%d × %d MiB gzip on loopback, --workers 1, defaults, `palleto run` as a process", len(objs), plainTotal/int64(len(objs))>>20)
	return []Row{
		{Scenario: "P1 pure Go", Setting: set, Value: fmt.Sprintf("%.0f MB/s", g),
			Limit: fmt.Sprintf("%.0f MB/s the Go build's inflate + count in memory", median(limit["go"])), Ratio: ratio(run["go"], limit["go"])},
		{Scenario: "P1 ISA-L", Setting: set + ", `go build -tags isal`", Value: fmt.Sprintf("%.0f MB/s", i),
			Limit: fmt.Sprintf("%.0f MB/s the ISA-L build's inflate + count in memory", median(limit["isal"])), Ratio: ratio(run["isal"], limit["isal"]), Target: 0.90},
		{Scenario: "P1 ISA-L against pure Go", Setting: set, Value: fmt.Sprintf("%.0f MB/s", i),
			Limit: fmt.Sprintf("%.0f MB/s the pure-Go build, same run", g), Ratio: ratio(run["isal"], run["go"]), Target: 2.5},
	}, nil
}

// runBinary runs a palleto binary on the queue until it is idle and returns the MB/s its
// summary gives (over its busy time).
func (b *bench) runBinary(ctx context.Context, bin, queueURL string, n int, args ...string) (float64, error) {
	out, _ := os.MkdirTemp("", "palleto-bench-bin")
	defer os.RemoveAll(out)
	cmd := exec.CommandContext(ctx, bin, append([]string{"run", "--queue-url", queueURL, "--out", out, "--wait-time", "0s",
		"--exit-when-idle", "1s", "--log-level", "warn", "--log-format", "text"}, args...)...)
	cmd.Env = append(os.Environ(), b.env.AWSEnv()...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%s run: %v\n%s", bin, err, stderr.String())
	}
	if !strings.Contains(stderr.String(), fmt.Sprintf("%d objects processed (0 already done, 0 failed", n)) {
		return 0, fmt.Errorf("%s: not every object processed:\n%s", bin, stderr.String())
	}
	var mbs float64
	if before, _, ok := strings.Cut(stderr.String(), " MB/s;"); ok {
		fmt.Sscan(before[strings.LastIndex(before, " ")+1:], &mbs)
	}
	return mbs, nil
}

// P1 as on AWS: big objects with S3 behind the fault proxy at 25 MB/s per connection and 20 ms
// to each first byte, what one GET stream gets on AWS, 1 worker: ranged GETs (the defaults)
// against the library's limit, and one stream (--part-size 0) for comparison.
func (b *bench) p1aws(ctx context.Context) ([]Row, error) {
	bucket := b.bucket("bench-aws")
	objs, plainTotal := b.bigObjects(ctx, bucket, b.o.AWSObjects, b.o.AWSBytes, 5, 7)
	proxy, err := faultproxy.Start(faultproxy.Config{Target: strings.TrimPrefix(b.env.S3Endpoint, "http://"), Bandwidth: 25e6, FirstByte: 20 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	defer proxy.Close()
	b.o.Log.Info("P1 as on AWS: data ready", "objects", len(objs), "gzip_MB_each", objs[0].size/1e6, "decompressed_MB", plainTotal/1e6)
	var mem, ranged, single []float64
	for run := range b.o.Runs {
		m, err := libraryLimit(objs)
		if err != nil {
			return nil, err
		}
		mem = append(mem, m)
		for _, part := range []int64{palleto.DefaultConfig().PartSize, 0} {
			cfg := palleto.DefaultConfig()
			cfg.SQS.QueueURL = b.queueOf(ctx, bucket, objs)
			cfg.SQS.WaitTime = 0
			cfg.Engine.Workers = 1
			cfg.PartSize = part
			b.s3Endpoint = proxy.URL()
			_, sum := b.runDaemon(ctx, cfg, "", len(objs))
			b.s3Endpoint = ""
			mbs := float64(plainTotal) / 1e6 / sum.Busy.Seconds()
			if part > 0 {
				ranged = append(ranged, mbs)
			} else {
				single = append(single, mbs)
			}
		}
		b.o.Log.Info("P1 as on AWS run", "run", run+1, "library_MBps", mem[run], "ranged_MBps", last(ranged), "one_stream_MBps", last(single))
	}
	m, r, one := median(mem), median(ranged), median(single)
	def := palleto.DefaultConfig()
	set := fmt.Sprintf("%d × %d MiB gzip (%d members, %d MiB compressed), S3 at 25 MB/s per connection and 20 ms to first byte, --workers 1",
		len(objs), b.o.AWSBytes>>20, 5, objs[0].size>>20)
	limit := fmt.Sprintf("%.0f MB/s klauspost gunzip + count in memory, 1 core", m)
	return []Row{
		{Scenario: "P1 as on AWS", Setting: fmt.Sprintf("%s, defaults (--part-size %d MiB, --parts-in-flight %d, --read-ahead %d MiB)", set, def.PartSize>>20, def.PartsInFlight, def.ReadAhead>>20),
			Value: fmt.Sprintf("%.0f MB/s", r), Limit: limit, Ratio: ratio(ranged, mem), Target: 0.85},
		{Scenario: "P1 as on AWS, one stream", Setting: set + ", --part-size 0", Value: fmt.Sprintf("%.0f MB/s", one), Limit: limit, Ratio: ratio(single, mem)},
	}, nil
}

// P3: peak RSS of a `palleto run` process with many workers on 1 GiB objects.
func (b *bench) p3(ctx context.Context) ([]Row, error) {
	bucket := b.bucket("bench-mem")
	plain := logLines(rand.New(rand.NewPCG(3, 0)), min(b.o.MemBytes, 16<<20))
	member, realPlain := gz(plain), int64(len(plain))
	plain = nil
	reps := max(1, int((b.o.MemBytes+realPlain/2)/realPlain))
	body := bytes.Repeat(member, reps) // a multi-member gzip of MemBytes, give or take a line
	first := object{key: "mem/0.log.gz", size: int64(len(body)), plain: realPlain * int64(reps)}
	first.etag = b.put(ctx, bucket, first.key, body)
	body = nil
	objs := []object{first}
	for i := 1; i < b.o.MemObjects; i++ {
		key := fmt.Sprintf("mem/%d.log.gz", i)
		out, err := b.s3c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &bucket, Key: &key, CopySource: aws.String(bucket + "/" + first.key)})
		if err != nil {
			return nil, fmt.Errorf("CopyObject: %w", err)
		}
		objs = append(objs, object{key: key, etag: strings.Trim(aws.ToString(out.CopyObjectResult.ETag), `"`), size: first.size, plain: first.plain})
	}
	b.o.Log.Info("P3 data ready", "objects", len(objs), "decompressed_MB_each", first.plain/1e6)
	var rss, mbs []float64
	for run := range b.o.Runs {
		out, _ := os.MkdirTemp("", "palleto-bench-p3")
		cmd := exec.CommandContext(ctx, b.o.Bin, "run", "--queue-url", b.queueOf(ctx, bucket, objs), "--out", out,
			"--workers", fmt.Sprint(b.o.MemWorkers), "--wait-time", "1s", "--exit-when-idle", "1s", "--log-level", "warn", "--log-format", "text")
		cmd.Env = append(os.Environ(), b.env.AWSEnv()...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		os.RemoveAll(out)
		if err != nil {
			return nil, fmt.Errorf("P3 palleto run: %v\n%s", err, stderr.String())
		}
		var r, m float64
		if _, after, ok := strings.Cut(stderr.String(), "peak RSS "); ok {
			fmt.Sscan(after, &r)
		}
		if before, _, ok := strings.Cut(stderr.String(), " MB/s;"); ok {
			fmt.Sscan(before[strings.LastIndex(before, " ")+1:], &m)
		}
		if !strings.Contains(stderr.String(), fmt.Sprintf("%d objects processed (0 already done, 0 failed)", len(objs))) {
			return nil, fmt.Errorf("P3: not every object processed:\n%s", stderr.String())
		}
		rss, mbs = append(rss, r), append(mbs, m)
		b.o.Log.Info("P3 run", "run", run+1, "peak_rss_MiB", r, "MBps", m)
	}
	r := median(rss)
	return []Row{{Scenario: "P3 memory", Setting: fmt.Sprintf("--workers %d, %d × %d MiB gzip objects (%.0f MB/s)", b.o.MemWorkers, len(objs), first.plain>>20, median(mbs)),
		Value: fmt.Sprintf("%.1f MiB peak RSS", r), Limit: "100 MiB", Ratio: r / 100, Target: -1}}, nil
}

// P4: PutObject to result file at a low steady rate, through MinIO's own notifications (webhook
// bridge, local-aws-sqs) and through the embedded devstack.
func (b *bench) p4(ctx context.Context) ([]Row, error) {
	var rows []Row
	// MinIO -> webhook bridge -> local-aws-sqs. local-aws-sqs answers a long poll only when it
	// has MaxNumberOfMessages messages or the wait ends, so the wait is 1s here.
	bucket := testenv.Name("bench-lat")
	queueURL := b.env.NotifiedBucket(b.tb, bucket)
	cfg := palleto.DefaultConfig()
	cfg.SQS.QueueURL, cfg.SQS.WaitTime = queueURL, time.Second
	p50, p99, err := b.latency(ctx, cfg, b.s3c, bucket, nil)
	if err != nil {
		return nil, err
	}
	rows = append(rows, Row{Scenario: "P4 latency", Setting: fmt.Sprintf("%d objects at %d/s; MinIO webhook → bridge → local-aws-sqs, --wait-time 1s", b.o.LatObjects, b.o.LatRate),
		Value: fmt.Sprintf("p50 %s, p99 %s", p50.Round(time.Millisecond), p99.Round(time.Millisecond)), Limit: "the emulator's long poll ends at 1s", Target: -1})

	st, err := devstack.Start(devstack.DefaultConfig())
	if err != nil {
		return nil, err
	}
	defer st.Close()
	denv := testenv.Env{S3Endpoint: st.S3Endpoint, SQSEndpoint: st.SQSEndpoint, AccessKey: "devstack", SecretKey: "devstack"}
	cfg = palleto.DefaultConfig()
	cfg.SQS.QueueURL = st.QueueURL // default 20s long poll: answered as soon as a message lands
	p50, p99, err = b.latency(ctx, cfg, denv.S3(), st.Bucket, &denv)
	if err != nil {
		return nil, err
	}
	rows = append(rows, Row{Scenario: "P4 latency", Setting: fmt.Sprintf("%d objects at %d/s; embedded devstack, --wait-time 20s", b.o.LatObjects, b.o.LatRate),
		Value: fmt.Sprintf("p50 %s, p99 %s", p50.Round(time.Millisecond), p99.Round(time.Millisecond)), Limit: "long poll answered when a message lands", Target: -1})
	return rows, nil
}

func (b *bench) latency(ctx context.Context, cfg palleto.Config, s3c *s3.Client, bucket string, env *testenv.Env) (p50, p99 time.Duration, err error) {
	saved := b.env
	if env != nil {
		b.env = *env
	}
	defer func() { b.env = saved }()
	put := make([]time.Time, b.o.LatObjects)
	body := gz(logLines(rand.New(rand.NewPCG(4, 0)), 2000))
	errc := make(chan error, 1)
	go func() {
		tick := time.NewTicker(time.Second / time.Duration(b.o.LatRate))
		defer tick.Stop()
		for i := range put {
			<-tick.C
			put[i] = time.Now()
			key := fmt.Sprintf("lat/%04d.log.gz", i)
			if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body)}); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	out, _ := os.MkdirTemp("", "palleto-bench-p4")
	defer os.RemoveAll(out)
	cfg.OutDir = out
	lat := b.runAndRead(ctx, cfg, bucket, put)
	if err := <-errc; err != nil {
		return 0, 0, err
	}
	slices.Sort(lat)
	return lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)], nil
}

// runAndRead runs the daemon until every object has a result and returns, per object, the time
// from the start of its PutObject to the result's finished_at.
func (b *bench) runAndRead(ctx context.Context, cfg palleto.Config, bucket string, put []time.Time) []time.Duration {
	d, _, stop := b.startDaemon(ctx, cfg)
	deadline := time.Now().Add(time.Minute + time.Duration(len(put))*time.Second/time.Duration(b.o.LatRate))
	for d.Stats().Objects < int64(len(put)) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	var lat []time.Duration
	for i, t0 := range put {
		data, err := os.ReadFile(filepath.Join(cfg.OutDir, bucket, "lat", fmt.Sprintf("%04d.log.gz.json", i)))
		var res struct {
			FinishedAt time.Time `json:"finished_at"`
		}
		if err != nil || json.Unmarshal(data, &res) != nil {
			b.tb.Fatalf("P4: no result for object %d: %v", i, err)
		}
		lat = append(lat, res.FinishedAt.Sub(t0))
	}
	return lat
}
