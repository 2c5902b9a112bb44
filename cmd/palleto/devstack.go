package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/palleto/palleto/devstack"
)

func cmdDevstack(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := devstack.DefaultConfig()
	fs := flag.NewFlagSet("palleto devstack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.S3Addr, "s3-addr", "127.0.0.1:9000", "address of the embedded S3")
	fs.StringVar(&cfg.SQSAddr, "sqs-addr", "127.0.0.1:9324", "address of the embedded SQS")
	fs.StringVar(&cfg.Bucket, "bucket", cfg.Bucket, "bucket to create; its ObjectCreated notifications go to --queue")
	fs.StringVar(&cfg.Queue, "queue", cfg.Queue, "queue to create")
	fs.StringVar(&cfg.DLQ, "dlq", cfg.DLQ, "dead-letter queue of --queue (\"\" for none)")
	fs.IntVar(&cfg.MaxReceives, "max-receives", cfg.MaxReceives, "redrive policy: receipts before a message moves to --dlq (keep it well above palleto run's --max-receives, which counts only the object's own failures)")
	probe := fs.Bool("probe", false, "start nothing: exit 0 if a devstack answers at --s3-addr and --sqs-addr, 1 if not (a container health check)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: palleto devstack [flags]

Runs an embedded S3 and SQS on 127.0.0.1 until interrupted, FOR DEVELOPMENT ONLY (in memory, no
authentication). Objects created in the bucket send S3 event notifications to the queue, as AWS
does; other buckets notify the queues their notification configuration names (aws s3api
put-bucket-notification-configuration, with the queue's ARN). Paste the printed export lines into another shell to point palleto run, or any AWS SDK or
tool, at it.
`)
		printFlags(fs, fs.Output())
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *probe {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return devstack.WaitReady(pctx, "http://"+cfg.S3Addr, "http://"+cfg.SQSAddr)
	}
	st, err := devstack.Start(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	fmt.Fprintf(stdout, "# palleto devstack (development only): S3 %s, SQS %s\n", st.S3Endpoint, st.SQSEndpoint)
	fmt.Fprintf(stdout, "# bucket %s notifies queue %s", st.Bucket, st.QueueURL)
	if st.DLQURL != "" {
		fmt.Fprintf(stdout, " (dead letters: %s)", st.DLQURL)
	}
	fmt.Fprintln(stdout)
	for _, kv := range st.Env() {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(stdout, "export %s=%s\n", k, v)
	}
	fmt.Fprintf(stdout, "# then: palleto run --queue-url %s --out ./out\n", st.QueueURL)
	fmt.Fprintf(stdout, "# tools that ignore AWS_ENDPOINT_URL_* (AWS CLI before 2.13, older SDKs) need the endpoint named:\n")
	fmt.Fprintf(stdout, "#   aws --endpoint-url %s s3 ls s3://%s/\n", st.S3Endpoint, st.Bucket)
	fmt.Fprintf(stdout, "#   aws --endpoint-url %s sqs receive-message --queue-url %s\n", st.SQSEndpoint, st.QueueURL)
	<-ctx.Done()
	fmt.Fprintln(stderr, "devstack: stopped")
	return nil
}
