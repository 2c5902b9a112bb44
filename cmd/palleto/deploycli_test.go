package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/palleto/palleto"
	"github.com/palleto/palleto/devstack"
	"github.com/palleto/palleto/internal/testenv"
)

// TestDeployNotificationCommandWorksOnDevstack runs DEPLOY.md's own "existing bucket" commands
// (get the queue's ARN, put the bucket's notification configuration) with Debian's AWS CLI
// against the devstack, only with the --endpoint-url that CLI needs, and the bucket's next
// upload reaches that queue.
func TestDeployNotificationCommandWorksOnDevstack(t *testing.T) {
	awsBin := "/usr/bin/aws" // Debian's
	if _, err := os.Stat(awsBin); err != nil {
		if os.Getenv("PALLETO_REQUIRE_SERVERS") == "1" {
			t.Fatal("the aws command (Debian's awscli) is required: run `make test`")
		}
		t.Skip("no aws command (Debian package awscli)")
	}
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "DEPLOY.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)\\*\\*An existing bucket\\.\\*\\*.*?```sh\n(.*?)```").FindSubmatch(doc)
	if m == nil || !strings.Contains(string(m[1]), "put-bucket-notification-configuration") {
		t.Fatal("DEPLOY.md has no `put-bucket-notification-configuration` command for an existing bucket")
	}
	script := strings.NewReplacer("aws sqs ", `aws --endpoint-url "$SQS_ENDPOINT" sqs `, "aws s3api ", `aws --endpoint-url "$S3_ENDPOINT" s3api `).Replace(string(m[1]))

	cfg := devstack.DefaultConfig()
	st, err := devstack.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	env := testenv.Env{S3Endpoint: st.S3Endpoint, SQSEndpoint: st.SQSEndpoint, AccessKey: "devstack", SecretKey: "devstack"}
	s3c, sqsc := env.S3(), env.SQS()
	bucket := "the-existing-bucket"
	if _, err := s3c.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	queueURL := testenv.NewQueue(t, sqsc, "existing-events", nil)
	sh := exec.Command("sh", "-ec", script)
	sh.Env = append(os.Environ(), append(st.Env(), "PATH=/usr/bin:/bin", "QUEUE_URL="+queueURL, "SQS_ENDPOINT="+st.SQSEndpoint, "S3_ENDPOINT="+st.S3Endpoint,
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER=")...)
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("DEPLOY.md's commands against the devstack:\n%s\n%v\n%s", script, err, out)
	}
	if _, err := s3c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("new.log"), Body: strings.NewReader("x\n")}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var bodies []string
	for len(bodies) < 2 && ctx.Err() == nil { // S3's test event, then the upload's
		out, err := sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &queueURL, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			break
		}
		for _, msg := range out.Messages {
			bodies = append(bodies, aws.ToString(msg.Body))
		}
	}
	if len(bodies) != 2 || !strings.Contains(bodies[0], "s3:TestEvent") || !strings.Contains(bodies[1], `"key":"new.log"`) {
		t.Errorf("the configured queue received %q, want S3's test event and the upload's notification", bodies)
	}
}

// TestComposeWaitsForAHealthyDevstack: palleto starts once the devstack service is healthy,
// and the health check (palleto's own probe, the image having no shell) answers 0 for a running
// devstack and 1 for none. The devstack's redrive stays well above --max-receives.
func TestComposeWaitsForAHealthyDevstack(t *testing.T) {
	doc := readYAML(t, "deploy/compose/compose.yaml")[0]
	if dig(t, doc, "services", "palleto", "depends_on", "devstack", "condition") != "service_healthy" {
		t.Error("the palleto service must wait for a healthy devstack (depends_on: condition: service_healthy)")
	}
	test, _ := dig(t, doc, "services", "devstack", "healthcheck", "test").([]any)
	if len(test) < 3 || test[0] != "CMD" || test[1] != "/usr/local/bin/palleto" {
		t.Fatalf("the devstack's health check %v does not run palleto", test)
	}
	args := make([]string, len(test)-2)
	for i, a := range test[2:] {
		args[i] = str(a)
	}
	st, err := devstack.Start(devstack.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	addrs := strings.NewReplacer("127.0.0.1:9000", strings.TrimPrefix(st.S3Endpoint, "http://"), "127.0.0.1:9324", strings.TrimPrefix(st.SQSEndpoint, "http://"))
	up := make([]string, len(args))
	for i, a := range args {
		up[i] = addrs.Replace(a)
	}
	if code, _, stderr := runPalleto(t, nil, time.Minute, up...); code != 0 {
		t.Errorf("palleto %v against a running devstack: exit %d\n%s", up, code, stderr)
	}
	st.Close()
	if code, _, _ := runPalleto(t, nil, time.Minute, up...); code != 1 {
		t.Errorf("palleto %v with no devstack: exit %d, want 1", up, code)
	}
	if n := devstack.DefaultConfig().MaxReceives; n < 2*palleto.DefaultConfig().MaxReceives {
		t.Errorf("the devstack's redrive maxReceiveCount %d: want at least twice --max-receives (%d)", n, palleto.DefaultConfig().MaxReceives)
	}
}
