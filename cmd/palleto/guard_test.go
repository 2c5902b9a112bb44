package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/store"
)

// TestOwnOutputInTheSameBucketMinIO: the s3:// store inside the bucket the daemon reads, with
// MinIO's notifications covering every key: the events of its own results and of its readiness
// object are skipped, never processed or recorded; 20 uploads give exactly 20 results, the start
// warns, and the run goes idle and exits 0 with the queue empty.
func TestOwnOutputInTheSameBucketMinIO(t *testing.T) {
	env := testenv.Get(t)
	bucket := testenv.Name("same")
	queueURL := env.NotifiedBucket(t, bucket)
	objs := uploadMany(t, env.S3(), bucket, "in", 20, 20, 31)
	testenv.WaitForMessages(t, env.SQS(), queueURL, len(objs), time.Minute)
	code, _, stderr := runPalleto(t, env.AWSEnv(), 3*time.Minute, "run", "--queue-url", queueURL, "--out", "s3://"+bucket+"/palleto",
		"--wait-time", "1s", "--exit-when-idle", "5s")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, tail(stderr, 4000))
	}
	got := storeResults(t, env, "s3://"+bucket+"/palleto", objs)
	if len(got) != len(objs) {
		t.Errorf("%d results of %d objects", len(got), len(objs))
	}
	var keys []string
	var token *string
	for {
		out, err := env.S3().ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String("palleto/"), ContinuationToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range out.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
		if token = out.NextContinuationToken; token == nil {
			break
		}
	}
	results, other := 0, []string{}
	for _, k := range keys {
		switch {
		case strings.HasPrefix(k, "palleto/"+bucket+"/in/"):
			results++
		case k != "palleto/_palleto/ready.json":
			other = append(other, k)
		}
	}
	if results != len(objs) || len(other) > 0 {
		t.Errorf("under palleto/: %d results (want %d) and %v besides the readiness object", results, len(objs), other)
	}
	if n := strings.Count(stderr, "Palleto's own output"); n < len(objs) {
		t.Errorf("%d events of its own output skipped, want at least %d (one per result)", n, len(objs))
	}
	if !strings.Contains(stderr, "the results store writes into a bucket this daemon reads") {
		t.Error("no warning at start about the store inside the bucket it reads")
	}
	expectEmptyQueue(t, env.SQS(), queueURL)
}

// TestUnreadableObjectDoesNotStopTheOthersMinIO: credentials that may read the bucket but not one
// object of it (a MinIO session policy denying that key, as a KMS key or an object policy does
// on AWS); three events for that object before 50 good ones. The 403 is the object's own (its
// bucket answers HeadBucket): the 50 are done, the bad one ends dead-lettered and recorded after
// --max-receives attempts, receiving never pauses, and the run exits 0 with the queue empty.
func TestUnreadableObjectDoesNotStopTheOthersMinIO(t *testing.T) {
	env := testenv.Get(t)
	bucket := testenv.Name("denied")
	queueURL := env.NotifiedBucket(t, bucket)
	dlq := testenv.NewQueue(t, env.SQS(), bucket+"-dlq", nil)
	s3c := env.S3()
	for range 3 {
		if _, err := s3c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("bad.txt"), Body: strings.NewReader("secret\n")}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitForMessages(t, env.SQS(), queueURL, 3, time.Minute)
	objs := uploadMany(t, s3c, bucket, "good", 50, 20, 32)
	testenv.WaitForMessages(t, env.SQS(), queueURL, 3+len(objs), time.Minute)
	creds := restricted(t, env, fmt.Sprintf(`{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":["s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::%[1]s","arn:aws:s3:::%[1]s/*"]},
		{"Effect":"Deny","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::%[1]s/bad.txt"]}]}`, bucket))
	out := t.TempDir()
	code, _, stderr := runPalleto(t, append(env.AWSEnv(), creds...), 3*time.Minute, "run", "--queue-url", queueURL, "--out", out,
		"--dlq-url", dlq, "--max-receives", "3", "--retry-backoff", "1s", "--wait-time", "1s", "--exit-when-idle", "5s")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, tail(stderr, 4000))
	}
	if bad := checkResults(t, out, objs); bad > 0 {
		t.Errorf("%d of %d good objects without their result", bad, len(objs))
	}
	if v, f := testenv.QueueCounts(t, env.SQS(), dlq); v+f != 3 {
		t.Errorf("%d messages in the DLQ, want the 3 of the unreadable object", v+f)
	}
	recs := failureRecords(out)
	var rec store.Failure
	if len(recs) == 1 {
		data, _ := os.ReadFile(recs[0])
		json.Unmarshal(data, &rec)
	}
	if len(recs) != 1 || rec.Class != "permanent" || rec.Action != "dead-lettered" || !strings.Contains(rec.Error, "access denied to this object while its bucket answers") {
		t.Errorf("failure records %v: %+v", recs, rec)
	}
	if strings.Contains(stderr, "UNAVAILABLE") || strings.Contains(stderr, "receiving paused") {
		t.Errorf("a breaker opened for one object:\n%s", tail(stderr, 4000))
	}
	expectEmptyQueue(t, env.SQS(), queueURL)
}

// restricted returns the environment of temporary MinIO credentials limited by policy (STS
// AssumeRole with a session policy, asked with the root credentials).
func restricted(t *testing.T, env testenv.Env, policy string) []string {
	t.Helper()
	c := sts.New(sts.Options{Region: "us-east-1", BaseEndpoint: aws.String(env.S3Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(env.AccessKey, env.SecretKey, "")})
	out, err := c.AssumeRole(context.Background(), &sts.AssumeRoleInput{RoleArn: aws.String("arn:minio:iam:::role/palleto-test"),
		RoleSessionName: aws.String("palleto-test"), Policy: aws.String(policy), DurationSeconds: aws.Int32(3600)})
	if err != nil {
		t.Fatalf("MinIO STS AssumeRole: %v", err)
	}
	k := out.Credentials
	return []string{"AWS_ACCESS_KEY_ID=" + aws.ToString(k.AccessKeyId), "AWS_SECRET_ACCESS_KEY=" + aws.ToString(k.SecretAccessKey),
		"AWS_SESSION_TOKEN=" + aws.ToString(k.SessionToken)}
}

// TestIdleExitWithTheDatabaseDownSaysWhatIsUndoneMinIO: PostgreSQL stops after the start; the
// messages that come meanwhile are put back (never deleted, never counted) and the breaker
// pauses receiving; --exit-when-idle still ends the run, with exit 1 and the number of messages
// it leaves undone, instead of exit 0 or waiting for ever. (That an idle exit waits for results
// still waiting to commit is TestIdleExitWaitsForResultsToCommit, in the palleto package.)
func TestIdleExitWithTheDatabaseDownSaysWhatIsUndoneMinIO(t *testing.T) {
	t.Parallel() // mostly waiting for an outage
	env := testenv.Get(t)
	pg := testenv.StartPostgres(t)
	bucket := testenv.Name("pgidle")
	queueURL := env.NotifiedBucket(t, bucket)
	cmd, stderr := startPalleto(t, env.AWSEnv(), "run", "--queue-url", queueURL, "--out", pg.URL, "--wait-time", "1s",
		"--retry-backoff", "1s", "--visibility-timeout", "10s", "--exit-when-idle", "2s")
	waitFor(t, stderr, "palleto started")
	pg.Stop(t)
	objs := uploadMany(t, env.S3(), bucket, "d", 10, 20, 33)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var err error
	select {
	case err = <-exited:
	case <-time.After(5 * time.Minute): // it waits 2 minutes for the database first
		t.Fatalf("no idle exit with the database down\n%s", tail(stderr.String(), 4000))
	}
	log := stderr.String()
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(log, "messages left undone in the queue") {
		t.Errorf("exit %d (%v); want 1 saying how many messages are left undone\n%s", code, err, tail(log, 3000))
	}
	if !strings.Contains(log, "results store UNAVAILABLE") {
		t.Errorf("no word of the database being down:\n%s", tail(log, 3000))
	}
	// Every message is still there: received again (at once: the run put them back with short
	// delays), each object's event once. (local-aws-sqs's counts of a queue whose messages had
	// their visibility changed twice are not to be trusted: the messages themselves are.)
	left := map[string]bool{}
	deadline := time.Now().Add(time.Minute)
	for len(left) < len(objs) && time.Now().Before(deadline) {
		out, err := env.SQS().ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &queueURL, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 60})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			left[aws.ToString(m.MessageId)] = true
		}
	}
	if len(left) != len(objs) {
		t.Errorf("%d messages left of %d after the run: some were deleted (or lost)\n%s", len(left), len(objs), tail(log, 3000))
	}
}

// waitFor waits until the process's stderr holds one of texts.
func waitFor(t *testing.T, stderr *syncBuffer, texts ...string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		for _, s := range texts {
			if strings.Contains(stderr.String(), s) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("none of %q in the log:\n%s", texts, tail(stderr.String(), 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
