package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/palleto/palleto"
	"github.com/palleto/palleto/devstack"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/store"
	_ "modernc.org/sqlite"
)

// notify sends one S3-format ObjectCreated notification per object to the queue, 10 per batch.
func notify(t *testing.T, sqsc *sqs.Client, queueURL string, objs map[string]want) {
	t.Helper()
	var batch []sqstypes.SendMessageBatchRequestEntry
	flush := func() {
		if len(batch) == 0 {
			return
		}
		out, err := sqsc.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: &queueURL, Entries: batch})
		if err != nil || len(out.Failed) > 0 {
			t.Fatalf("SendMessageBatch: %v %+v", err, out)
		}
		batch = batch[:0]
	}
	for key, w := range objs {
		body := devstack.EventBody("ObjectCreated:Put", w.Bucket, key, "", w.ETag, int64(w.Size))
		batch = append(batch, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(len(batch))), MessageBody: &body})
		if len(batch) == 10 {
			flush()
		}
	}
	flush()
}

// storeResults reads every object's result back from the store --out names.
func storeResults(t *testing.T, env testenv.Env, out string, objs map[string]want) map[string]want {
	t.Helper()
	st, err := palleto.OpenStore(context.Background(), out, store.GroupConfig{}, env.S3())
	if err != nil {
		t.Fatalf("open %s: %v", out, err)
	}
	defer st.Close()
	got := map[string]want{}
	for key, w := range objs {
		r, err := st.Result(context.Background(), w.Bucket, key, "lines")
		if err != nil || r == nil {
			continue
		}
		lines, _ := r.Fields["lines"].(int64)
		if f, ok := r.Fields["lines"].(float64); ok {
			lines = int64(f)
		}
		got[key] = want{r.Bucket, r.Key, r.ETag, r.Encoding, r.Processor, int(lines), int(r.Bytes), int(r.Size)}
	}
	return got
}

// TestEveryStoreHoldsTheSameResultsMinIO: the same 200 objects, processed once into each of the
// four stores, give the same results (bucket, key, eTag, lines, bytes, size, encoding).
func TestEveryStoreHoldsTheSameResultsMinIO(t *testing.T) {
	env := testenv.Get(t)
	bucket := testenv.Name("stores")
	if _, err := env.S3().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	objs := uploadMany(t, env.S3(), bucket, "st", 200, 40, 21)
	resultsBucket := testenv.Name("results")
	if _, err := env.S3().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &resultsBucket}); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{
		t.TempDir(),
		"sqlite:" + filepath.Join(t.TempDir(), "results.db"),
		testenv.PostgresDatabase(t),
		"s3://" + resultsBucket + "/palleto",
	} {
		kind, _ := palleto.StoreKind(out)
		t.Run(kind, func(t *testing.T) {
			queueURL := testenv.NewQueue(t, env.SQS(), testenv.Name("q-"+kind), nil)
			notify(t, env.SQS(), queueURL, objs)
			code, _, stderr := runPalleto(t, env.AWSEnv(), 3*time.Minute, "run", "--queue-url", queueURL, "--out", out,
				"--wait-time", "1s", "--exit-when-idle", "3s")
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, tail(stderr, 3000))
			}
			got := storeResults(t, env, out, objs)
			bad := 0
			for key, w := range objs {
				if got[key] != w {
					if bad < 3 {
						t.Errorf("%s: %+v, want %+v", key, got[key], w)
					}
					bad++
				}
			}
			if bad > 0 {
				t.Errorf("%s: %d of %d results differ from a clean run's", kind, bad, len(objs))
			}
			expectEmptyQueue(t, env.SQS(), queueURL)
		})
	}
}

func sqliteCount(t *testing.T, path string) (rows, distinct int) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		return 0, 0 // not made yet
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.QueryRow(`SELECT count(*), count(DISTINCT bucket || '/' || "key") FROM results`).Scan(&rows, &distinct)
	if err != nil && !strings.Contains(err.Error(), "no such table") {
		t.Fatalf("count: %v", err)
	}
	return rows, distinct
}

// TestKill9DuringGroupedCommitsSQLite: kill -9 while results are being committed in groups,
// restart: every object has exactly one result row, and the queue ends empty.
func TestKill9DuringGroupedCommitsSQLite(t *testing.T) {
	env := testenv.Get(t)
	bucket := testenv.Name("sqlkill")
	queueURL := env.NotifiedBucket(t, bucket)
	const n = 1500
	objs := uploadMany(t, env.S3(), bucket, "k", n, 20, 22)
	testenv.WaitForMessages(t, env.SQS(), queueURL, n, 2*time.Minute)
	db := filepath.Join(t.TempDir(), "results.db")
	out := "sqlite:" + db
	// A short visibility timeout: what the killed process held comes back soon for the restart.
	cmd, stderr := startPalleto(t, env.AWSEnv(), "run", "--queue-url", queueURL, "--out", out, "--wait-time", "1s", "--visibility-timeout", "5s")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if rows, _ := sqliteCount(t, db); rows >= n/2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress:\n%s", tail(stderr.String(), 3000))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	killedAt, _ := sqliteCount(t, db)
	code, _, errs := runPalleto(t, env.AWSEnv(), 3*time.Minute, "run", "--queue-url", queueURL, "--out", out,
		"--wait-time", "1s", "--visibility-timeout", "5s", "--exit-when-idle", "12s")
	if code != 0 {
		t.Fatalf("restart: exit %d\n%s", code, tail(errs, 3000))
	}
	rows, distinct := sqliteCount(t, db)
	t.Logf("killed at %d result rows; after the restart %d rows for %d objects", killedAt, rows, distinct)
	if rows != n || distinct != n {
		t.Errorf("%d rows, %d distinct objects; want exactly one row for each of %d", rows, distinct, n)
	}
	if bad := len(objs) - len(storeResults(t, env, out, objs)); bad != 0 {
		t.Errorf("%d objects without a result", bad)
	}
	expectEmptyQueue(t, env.SQS(), queueURL)
}

func pgCount(t *testing.T, url string) (rows, distinct int) {
	t.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow(`SELECT count(*), count(DISTINCT (bucket, "key")) FROM results`).Scan(&rows, &distinct); err != nil {
		t.Fatalf("count: %v", err)
	}
	return rows, distinct
}

// TestThreeReplicasOnePostgresMinIO: three processes on one queue writing to one PostgreSQL:
// one row per object, none missing, none doubled.
func TestThreeReplicasOnePostgresMinIO(t *testing.T) {
	env := testenv.Get(t)
	bucket := testenv.Name("pgscale")
	queueURL := env.NotifiedBucket(t, bucket)
	const n = 1500
	objs := uploadMany(t, env.S3(), bucket, "p", n, 20, 23)
	testenv.WaitForMessages(t, env.SQS(), queueURL, n, 2*time.Minute)
	url := testenv.PostgresDatabase(t)
	errs := make(chan string, 3)
	for range 3 {
		go func() {
			code, _, stderr := runPalleto(t, env.AWSEnv(), 4*time.Minute, "run", "--queue-url", queueURL, "--out", url,
				"--wait-time", "1s", "--exit-when-idle", "5s")
			if code != 0 {
				errs <- fmt.Sprintf("exit %d\n%s", code, tail(stderr, 2000))
				return
			}
			errs <- ""
		}()
	}
	for range 3 {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
	rows, distinct := pgCount(t, url)
	if rows != n || distinct != n {
		t.Errorf("%d rows, %d distinct objects; want exactly one row for each of %d", rows, distinct, n)
	}
	got := storeResults(t, env, url, objs)
	for key, w := range objs {
		if got[key] != w {
			t.Errorf("%s: %+v, want %+v", key, got[key], w)
			break
		}
	}
	expectEmptyQueue(t, env.SQS(), queueURL)
}

// TestPostgresOutageKeepsMessagesMinIO: the database stops while results are being committed;
// no message is deleted while it is down, the daemon says so, and once it is back every result
// is there and the queue empties.
func TestPostgresOutageKeepsMessagesMinIO(t *testing.T) {
	t.Parallel() // mostly waiting (an outage, a slow processor): it overlaps the tests that work
	env := testenv.Get(t)
	pg := testenv.StartPostgres(t)
	bucket := testenv.Name("pgdown")
	queueURL := env.NotifiedBucket(t, bucket)
	cmd, stderr := startPalleto(t, env.AWSEnv(), "run", "--queue-url", queueURL, "--out", pg.URL, "--wait-time", "1s",
		"--retry-backoff", "1s", "--visibility-timeout", "10s", "--exit-when-idle", "5s")
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(stderr.String(), "palleto started") {
		if time.Now().After(deadline) {
			t.Fatalf("no start:\n%s", tail(stderr.String(), 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	pg.Stop(t)
	objs := uploadMany(t, env.S3(), bucket, "d", 50, 20, 24)
	for !strings.Contains(stderr.String(), "RESULTS STORE COMMIT FAILED") && !strings.Contains(stderr.String(), "results store UNAVAILABLE") {
		if time.Now().After(deadline) {
			t.Fatalf("no word of the database being down:\n%s", tail(stderr.String(), 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(5 * time.Second) // the outage goes on: the scenario, not a synchronisation
	if v, f := testenv.QueueCounts(t, env.SQS(), queueURL); v+f < len(objs) {
		t.Errorf("with the database down, %d messages are left of %d: some were deleted", v+f, len(objs))
	}
	pg.Start(t)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("palleto run: %v\n%s", err, tail(stderr.String(), 3000))
	}
	got := storeResults(t, env, pg.URL, objs)
	if len(got) != len(objs) {
		t.Errorf("%d of %d results after the database came back", len(got), len(objs))
	}
	for key, w := range objs {
		if g, ok := got[key]; ok && g != w {
			t.Errorf("%s: %+v, want %+v", key, g, w)
			break
		}
	}
	expectEmptyQueue(t, env.SQS(), queueURL)
}

// TestCopyToS3StoreMinIO: --processor copy with an s3:// store writes each decompressed object
// under PREFIX/_copy/, streamed; with a database store it is refused at start.
func TestCopyToS3StoreMinIO(t *testing.T) {
	env := testenv.Get(t)
	bucket := testenv.Name("copys3")
	queueURL := env.NotifiedBucket(t, bucket)
	_, gz, plain := func() (string, []byte, []byte) {
		r := rand.New(rand.NewPCG(25, 1))
		g, p := gzipLines(r, 30000, 2)
		return "", g, p
	}()
	putObject(t, env.S3(), bucket, "c/big.log.gz", gz)
	testenv.WaitForMessages(t, env.SQS(), queueURL, 1, time.Minute)
	results := testenv.Name("copyout")
	if _, err := env.S3().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &results}); err != nil {
		t.Fatal(err)
	}
	out := "s3://" + results + "/pal"
	code, _, stderr := runPalleto(t, env.AWSEnv(), 2*time.Minute, "run", "--queue-url", queueURL, "--out", out,
		"--processor", "copy", "--wait-time", "1s", "--exit-when-idle", "3s")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, tail(stderr, 3000))
	}
	key := "pal/_copy/" + bucket + "/c/big.log.gz.data"
	obj, err := env.S3().GetObject(context.Background(), &s3.GetObjectInput{Bucket: &results, Key: &key})
	if err != nil {
		t.Fatalf("the copy at s3://%s/%s: %v\n%s", results, key, err, tail(stderr, 2000))
	}
	got, _ := io.ReadAll(obj.Body)
	obj.Body.Close()
	if !bytes.Equal(got, plain) {
		t.Errorf("the copy holds %d bytes, want the %d decompressed bytes", len(got), len(plain))
	}
	code, _, stderr = runPalleto(t, env.AWSEnv(), time.Minute, "run", "--queue-url", queueURL, "--out", "sqlite:"+filepath.Join(t.TempDir(), "r.db"), "--processor", "copy")
	if code != 2 || !strings.Contains(stderr, "copy") {
		t.Errorf("copy with a database store: exit %d, want 2 and why:\n%s", code, tail(stderr, 1000))
	}
}
