// Package testenv gives tests the real servers started by scripts/testservers.sh (local-aws-sqs,
// MinIO with its webhook notifications bridged to SQS). Without them a test is skipped, unless
// PALLETO_REQUIRE_SERVERS=1 (set by `make test` and CI), when it fails.
package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// Env is where the servers are.
type Env struct {
	SQSEndpoint, S3Endpoint string
	AccessKey, SecretKey    string
	MinioQueueARN           string // the webhook target MinIO was started with
	// MinioWebhookARN is MinIO's second webhook target, which posts to Palleto's own webhook
	// source on 127.0.0.1:WebhookPort (queueing its events while nothing listens there).
	MinioWebhookARN string
	WebhookPort     string
	// MinioNATSARN is MinIO's NATS JetStream target (arn:minio:sqs::PALLETO:nats), publishing
	// to the subject NATSSubject of the nats-server of NATSURL; empty without one.
	MinioNATSARN, NATSSubject string
}

// FromEnv returns the servers' addresses from the PALLETO_TEST_* variables that
// scripts/testservers.sh writes to .testservers/env, and whether they are set.
func FromEnv() (Env, bool) {
	e := Env{
		SQSEndpoint: os.Getenv("PALLETO_TEST_SQS_ENDPOINT"), S3Endpoint: os.Getenv("PALLETO_TEST_S3_ENDPOINT"),
		AccessKey: os.Getenv("PALLETO_TEST_S3_ACCESS_KEY"), SecretKey: os.Getenv("PALLETO_TEST_S3_SECRET_KEY"),
		MinioQueueARN:   os.Getenv("PALLETO_TEST_MINIO_QUEUE_ARN"),
		MinioWebhookARN: os.Getenv("PALLETO_TEST_MINIO_WEBHOOK_ARN"), WebhookPort: os.Getenv("PALLETO_TEST_WEBHOOK_PORT"),
		MinioNATSARN: os.Getenv("PALLETO_TEST_MINIO_NATS_ARN"), NATSSubject: os.Getenv("PALLETO_TEST_MINIO_NATS_SUBJECT"),
	}
	return e, e.SQSEndpoint != "" && e.S3Endpoint != ""
}

// Get returns the servers' addresses, or skips (fails, when they are required) without them.
func Get(t testing.TB) Env {
	t.Helper()
	e, ok := FromEnv()
	if !ok {
		if os.Getenv("PALLETO_REQUIRE_SERVERS") == "1" {
			t.Fatal("test servers required but PALLETO_TEST_SQS_ENDPOINT/PALLETO_TEST_S3_ENDPOINT are not set: run `make test`")
		}
		t.Skip("no test servers: run `make test` (or scripts/testservers.sh start and source .testservers/env)")
	}
	return e
}

// AWSEnv is the environment a palleto subprocess needs to reach the servers the standard way.
func (e Env) AWSEnv() []string {
	return []string{
		"AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=" + e.AccessKey, "AWS_SECRET_ACCESS_KEY=" + e.SecretKey,
		"AWS_ENDPOINT_URL_SQS=" + e.SQSEndpoint, "AWS_ENDPOINT_URL_S3=" + e.S3Endpoint,
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
	}
}

func (e Env) awsConfig() aws.Config {
	return aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(e.AccessKey, e.SecretKey, "")}
}

// SQS returns a client of the SQS server.
func (e Env) SQS() *sqs.Client {
	return sqs.NewFromConfig(e.awsConfig(), func(o *sqs.Options) { o.BaseEndpoint = aws.String(e.SQSEndpoint) })
}

// S3 returns a path-style client of MinIO.
func (e Env) S3() *s3.Client {
	return s3.NewFromConfig(e.awsConfig(), func(o *s3.Options) {
		o.BaseEndpoint = aws.String(e.S3Endpoint)
		o.UsePathStyle = true
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	})
}

// Name returns a fresh lower-case name usable for a bucket and a queue.
func Name(prefix string) string {
	return fmt.Sprintf("%s-%d-%06d", prefix, time.Now().Unix()%100000, rand.IntN(1000000))
}

// NewQueue creates a queue and returns its URL.
func NewQueue(t testing.TB, c *sqs.Client, name string, attrs map[string]string) string {
	t.Helper()
	out, err := c.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: &name, Attributes: attrs})
	if err != nil {
		t.Fatalf("CreateQueue %s: %v", name, err)
	}
	return aws.ToString(out.QueueUrl)
}

// NotifiedBucket creates a MinIO bucket and a queue of the same name, and configures MinIO to
// send every ObjectCreated event to it (through the webhook bridge). It returns the queue URL.
func (e Env) NotifiedBucket(t testing.TB, name string) string {
	t.Helper()
	ctx := context.Background()
	url := NewQueue(t, e.SQS(), name, nil)
	s3c := e.S3()
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("CreateBucket %s: %v", name, err)
	}
	_, err := s3c.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{
		Bucket: &name,
		NotificationConfiguration: &s3types.NotificationConfiguration{QueueConfigurations: []s3types.QueueConfiguration{{
			QueueArn: aws.String(e.MinioQueueARN), Events: []s3types.Event{"s3:ObjectCreated:*"},
		}}},
	})
	if err != nil {
		t.Fatalf("PutBucketNotificationConfiguration %s: %v", name, err)
	}
	return url
}

// QueueCounts returns the visible and in-flight message counts.
func QueueCounts(t testing.TB, c *sqs.Client, url string) (visible, inFlight int) {
	t.Helper()
	out, err := c.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: &url,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	if err != nil {
		t.Fatalf("GetQueueAttributes: %v", err)
	}
	fmt.Sscan(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)], &visible)
	fmt.Sscan(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)], &inFlight)
	return visible, inFlight
}

// WaitForMessages waits until the queue holds at least n messages (visible or not).
func WaitForMessages(t testing.TB, c *sqs.Client, url string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v, f := QueueCounts(t, c, url)
		if v+f >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %s holds %d messages after %s, want %d", url, v+f, timeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// PostgresURL returns the URL of the test PostgreSQL that scripts/testservers.sh starts, or
// skips (fails, when servers are required) without it.
func PostgresURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("PALLETO_TEST_POSTGRES_URL")
	if url == "" {
		if os.Getenv("PALLETO_REQUIRE_SERVERS") == "1" {
			t.Fatal("PostgreSQL required but PALLETO_TEST_POSTGRES_URL is not set: run `make test`")
		}
		t.Skip("no PostgreSQL: run `make test` (or scripts/testservers.sh start and source .testservers/env)")
	}
	return url
}

// PostgresDatabase creates a fresh database on the test PostgreSQL and returns its URL.
func PostgresDatabase(t testing.TB) string {
	t.Helper()
	base := PostgresURL(t)
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	name := strings.ReplaceAll(Name("palleto"), "-", "_")
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("CREATE DATABASE %s: %v", name, err)
	}
	u, err := neturl.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// Postgres is a PostgreSQL server of one test's own, which the test may stop and start again
// (an outage of the results store) without disturbing the shared one.
type Postgres struct {
	URL  string
	bin  string
	data string
	port int
}

// StartPostgres starts a fresh PostgreSQL from Debian's package on a free port, as the
// `postgres` user when the test runs as root (PostgreSQL refuses root); it is stopped at the end
// of the test.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	PostgresURL(t) // skip or fail as the shared server does
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		t.Fatal("no PostgreSQL server installed (Debian package postgresql): run `make test`")
	}
	sort.Strings(bins)
	dir, err := os.MkdirTemp("", "palleto-pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Getuid() == 0 {
		exec.Command("chown", "postgres:", dir).Run()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	p := &Postgres{bin: filepath.Dir(bins[len(bins)-1]), data: filepath.Join(dir, "data"), port: port,
		URL: fmt.Sprintf("postgres://palleto@127.0.0.1:%d/postgres?sslmode=disable", port)}
	if out, err := p.run("initdb", "-D", p.data, "-U", "palleto", "-A", "trust", "--no-sync"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	p.Start(t)
	t.Cleanup(func() { p.run("pg_ctl", "-D", p.data, "-m", "immediate", "stop") })
	return p
}

func (p *Postgres) run(tool string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(p.bin, tool), args...)
	if os.Getuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(p.bin, tool)}, args...)...)
	}
	return cmd.CombinedOutput()
}

// Start starts the server and waits until it takes connections.
func (p *Postgres) Start(t testing.TB) {
	t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", p.port, filepath.Dir(p.data))
	if out, err := p.run("pg_ctl", "-D", p.data, "-l", filepath.Join(filepath.Dir(p.data), "log"), "-w", "-t", "60", "-o", opts, "start"); err != nil {
		t.Fatalf("pg_ctl start: %v\n%s", err, out)
	}
}

// Stop stops the server at once, as a crash or a network cut does.
func (p *Postgres) Stop(t testing.TB) {
	t.Helper()
	if out, err := p.run("pg_ctl", "-D", p.data, "-m", "immediate", "-w", "stop"); err != nil {
		t.Fatalf("pg_ctl stop: %v\n%s", err, out)
	}
}

// ZstdZeros is a zstd frame of n zero bytes (a multiple of 128 KiB) whose header asks for a
// window of 2^windowLog bytes: RLE blocks of 128 KiB, 4 bytes each. With windowLog 29 and 2 GiB
// it is the "75 KB object" of `head -c 2G /dev/zero | zstd --long=29`, made without an encoder
// that would itself allocate the window.
func ZstdZeros(windowLog int, n int64) []byte {
	out := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, byte((windowLog - 10) << 3)}
	const block = 128 << 10
	for left := n; left > 0; left -= block {
		h := uint32(block)<<3 | 1<<1 // an RLE block of 128 KiB
		if left <= block {
			h |= 1 // the last one
		}
		out = append(out, byte(h), byte(h>>8), byte(h>>16), 0)
	}
	return out
}

// NATSURL returns the address (nats://127.0.0.1:PORT) of the test nats-server with JetStream
// that scripts/testservers.sh starts, or skips (fails, when servers are required) without it.
func NATSURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("PALLETO_TEST_NATS_URL")
	if url == "" {
		if os.Getenv("PALLETO_REQUIRE_SERVERS") == "1" {
			t.Fatal("nats-server required but PALLETO_TEST_NATS_URL is not set: run `make test`")
		}
		t.Skip("no nats-server: run `make test` (or scripts/testservers.sh start and source .testservers/env)")
	}
	return url
}

// NATS is a nats-server with JetStream of one test's own, which the test may stop and start
// again on the same port and store directory (an outage of the broker) without disturbing the
// shared one.
type NATS struct {
	URL  string
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
}

// StartNATS starts a nats-server (-js) on a free port of 127.0.0.1 with a store directory of
// its own; it is stopped at the end of the test. It skips (fails, when servers are required)
// where scripts/testservers.sh has not provided one.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	NATSURL(t)
	bin := os.Getenv("PALLETO_TEST_NATS_BIN")
	if bin == "" {
		bin, _ = exec.LookPath("nats-server")
	}
	if bin == "" {
		t.Fatal("no nats-server (PALLETO_TEST_NATS_BIN): run `make test`")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	n := &NATS{URL: fmt.Sprintf("nats://127.0.0.1:%d", port), bin: bin, dir: t.TempDir(), port: port}
	n.Start(t)
	t.Cleanup(func() {
		if n.cmd != nil {
			n.cmd.Process.Kill()
			n.cmd.Wait()
		}
	})
	return n
}

// Start starts the server and waits until it takes connections.
func (n *NATS) Start(t testing.TB) {
	t.Helper()
	n.cmd = exec.Command(n.bin, "-js", "-a", "127.0.0.1", "-p", fmt.Sprint(n.port), "-sd", n.dir)
	n.cmd.Stdout, n.cmd.Stderr = nil, nil
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server on port %d did not come up: %v", n.port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the server (SIGTERM) and waits for it to exit: every client loses its connection.
func (n *NATS) Stop(t testing.TB) {
	t.Helper()
	if n.cmd == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	n.cmd.Wait()
	n.cmd = nil
}

// ProcessCPU is the CPU time (user + system, every thread) this process has used so far: what
// a benchmark's work cost the machine, fsync waits not included.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
