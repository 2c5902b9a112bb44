package testenv

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Webhook returns the address MinIO's PALLETOHOOK target posts to (127.0.0.1:PORT; the path is
// /minio), for a Palleto webhook source to listen on, or skips (fails, when servers are
// required) without it. The address is the test's alone until it ends: tests of every package
// that listen there take turns (a lock file), since MinIO sends every such event to that one
// port.
func (e Env) Webhook(t testing.TB) string {
	t.Helper()
	if e.WebhookPort == "" || e.MinioWebhookARN == "" {
		if os.Getenv("PALLETO_REQUIRE_SERVERS") == "1" {
			t.Fatal("MinIO's webhook target required but PALLETO_TEST_WEBHOOK_PORT/PALLETO_TEST_MINIO_WEBHOOK_ARN are not set: run `make test`")
		}
		t.Skip("no MinIO webhook target: run `make test` (or scripts/testservers.sh start and source .testservers/env)")
	}
	unlock, err := lockFile(filepath.Join(os.TempDir(), "palleto-webhook-"+e.WebhookPort+".lock"))
	if err != nil {
		t.Fatalf("taking the webhook port %s: %v", e.WebhookPort, err)
	}
	t.Cleanup(unlock)
	return "127.0.0.1:" + e.WebhookPort
}

// WebhookBucket creates a MinIO bucket whose ObjectCreated events MinIO posts to Palleto's
// webhook source (the PALLETOHOOK target).
func (e Env) WebhookBucket(t testing.TB, name string) {
	t.Helper()
	ctx := context.Background()
	s3c := e.S3()
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("CreateBucket %s: %v", name, err)
	}
	_, err := s3c.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{
		Bucket: &name,
		NotificationConfiguration: &s3types.NotificationConfiguration{QueueConfigurations: []s3types.QueueConfiguration{{
			QueueArn: aws.String(e.MinioWebhookARN), Events: []s3types.Event{"s3:ObjectCreated:*"},
		}}},
	})
	if err != nil {
		t.Fatalf("PutBucketNotificationConfiguration %s -> %s: %v", name, e.MinioWebhookARN, err)
	}
}
