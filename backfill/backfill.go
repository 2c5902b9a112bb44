// Package backfill announces the objects that are in a bucket already: it lists the bucket
// (ListObjectsV2, page by page, in constant memory) and sends one S3-format ObjectCreated
// notification per selected object (SendMessageBatch, 10 at a time) to the queue `palleto run`
// consumes, so that those objects take the same path, with the same guarantees and scale-out,
// as new ones. A checkpoint file records how far the listing got, after each page whose
// messages were all sent: a backfill killed at any point and started again sends every object
// at least once and re-sends at most one page.
package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/palleto/palleto/notify"
	"github.com/palleto/palleto/store"
)

// ConfigurationID is the configurationId of every notification a backfill sends: how a
// user (or a processor reading the event) tells them from S3's own.
const ConfigurationID = "palleto-backfill"

// Sequencer is the sequencer of every backfill notification: an S3 sequencer orders the
// events of one key, and the one of an object listed now is unknown. "0" is older than any
// event S3 sends, so a backfill never replaces the result of one of S3's own events; a result
// for the same eTag makes it "already done" in any case.
const Sequencer = "0"

// MaxMessage is SQS's limit on a message body, and on a batch's total.
const MaxMessage = 256 << 10

// ListAPI is the part of the S3 client a backfill calls. *s3.Client implements it.
type ListAPI interface {
	ListObjectsV2(context.Context, *s3.ListObjectsV2Input, ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

// SendAPI is the part of the SQS client a backfill calls. *sqs.Client implements it.
type SendAPI interface {
	SendMessageBatch(context.Context, *awssqs.SendMessageBatchInput, ...func(*awssqs.Options)) (*awssqs.SendMessageBatchOutput, error)
	GetQueueAttributes(context.Context, *awssqs.GetQueueAttributesInput, ...func(*awssqs.Options)) (*awssqs.GetQueueAttributesOutput, error)
}

// Config is what to backfill.
type Config struct {
	Bucket   string
	QueueURL string // the SQS queue; it or To is required unless DryRun
	// To names the destination RunTo publishes to (--to URL), for errors and the checkpoint.
	To     string
	Prefix string
	// Since and Until bound LastModified (zero: no bound); Since is inclusive, Until exclusive.
	Since, Until time.Time
	// Include and Exclude are key globs with run's meaning (path.Match: '*' does not cross '/').
	Include, Exclude []string
	// Processor names the results looked up in Store (an object whose result is there for the
	// same eTag is skipped).
	Processor string
	DryRun    bool
	// Checkpoint, when set, is the file that records how far the listing got.
	Checkpoint string
	PageSize   int // objects per ListObjectsV2 page (1-1000, default 1000)
	// Progress, when set, is called after each page with the counts so far.
	Progress func(Summary)
}

// Validate names the first bad setting.
func (c Config) Validate() error {
	switch {
	case c.Bucket == "":
		return errors.New("bucket: required (the bucket to list)")
	case c.QueueURL == "" && c.To == "" && !c.DryRun:
		return errors.New("queue-url: required unless --dry-run (the queue palleto run consumes; or --to URL: nats://...)")
	case c.PageSize < 0 || c.PageSize > 1000:
		return fmt.Errorf("page-size: %d is out of range [1, 1000]", c.PageSize)
	case !c.Since.IsZero() && !c.Until.IsZero() && !c.Until.After(c.Since):
		return fmt.Errorf("until: %s is not after --since %s", c.Until.Format(time.RFC3339), c.Since.Format(time.RFC3339))
	}
	for name, globs := range map[string][]string{"include": c.Include, "exclude": c.Exclude} {
		for _, g := range globs {
			if _, err := path.Match(g, ""); err != nil {
				return fmt.Errorf("%s: %q is not a glob (path.Match syntax: *, ?, [a-z], \\x): %v", name, g, err)
			}
		}
	}
	return nil
}

// Summary counts what a backfill did. Its JSON is the last line of `palleto backfill --json`.
type Summary struct {
	Listed      int64 `json:"listed"`       // objects listed
	Filtered    int64 `json:"filtered"`     // left out by --since, --until, --include, --exclude
	SkippedDone int64 `json:"skipped_done"` // their result is in --out for the same eTag
	Sent        int64 `json:"sent"`         // notifications sent (0 with --dry-run)
	Bytes       int64 `json:"bytes"`        // bytes of the objects sent (with --dry-run: that would be sent)
	WouldSend   int64 `json:"would_send"`   // with --dry-run: the notifications that would be sent
	// ByPrefix counts what is (or would be) sent per top-level prefix ("" for keys with no '/').
	ByPrefix map[string]*Count `json:"-"`
	Resumed  bool              `json:"-"` // started from a checkpoint
}

// Count is a number of objects and their bytes.
type Count struct{ Objects, Bytes int64 }

// checkpoint is the file's content.
type checkpoint struct {
	Bucket     string  `json:"bucket"`
	Prefix     string  `json:"prefix"`
	StartAfter string  `json:"start_after"` // the last key of the last page fully sent
	Counts     Summary `json:"counts"`      // so far
	At         string  `json:"at"`
}

// Run lists and sends to the SQS queue cfg.QueueURL. st, when not nil, is the results store whose
// results make objects skipped. The error says what failed; the checkpoint, if any, allows
// resuming.
func Run(ctx context.Context, cfg Config, lister ListAPI, sender SendAPI, st store.Store) (Summary, error) {
	return RunTo(ctx, cfg, lister, SQS(sender, cfg.QueueURL), st)
}

// RunTo lists and publishes to pub (nil with DryRun), as Run does to an SQS queue.
func RunTo(ctx context.Context, cfg Config, lister ListAPI, pub Publisher, st store.Store) (Summary, error) {
	sum := Summary{ByPrefix: map[string]*Count{}}
	if err := cfg.Validate(); err != nil {
		return sum, err
	}
	if pub == nil && !cfg.DryRun {
		return sum, errors.New("backfill: nothing to publish to")
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = 1000
	}
	if cfg.Processor == "" {
		cfg.Processor = "lines"
	}
	if err := check(ctx, cfg, lister, pub); err != nil {
		return sum, err
	}
	var startAfter string
	if cfg.Checkpoint != "" {
		cp, err := readCheckpoint(cfg.Checkpoint)
		if err != nil {
			return sum, err
		}
		if cp != nil {
			if cp.Bucket != cfg.Bucket || cp.Prefix != cfg.Prefix {
				return sum, fmt.Errorf("checkpoint: %s is of s3://%s/%s, not of s3://%s/%s", cfg.Checkpoint, cp.Bucket, cp.Prefix, cfg.Bucket, cfg.Prefix)
			}
			startAfter = cp.StartAfter
			cp.Counts.ByPrefix = sum.ByPrefix
			sum = cp.Counts
			sum.Resumed = true
		}
	}
	in := &s3.ListObjectsV2Input{Bucket: &cfg.Bucket, MaxKeys: aws.Int32(int32(cfg.PageSize))}
	if cfg.Prefix != "" {
		in.Prefix = &cfg.Prefix
	}
	if startAfter != "" {
		in.StartAfter = &startAfter
	}
	p := s3.NewListObjectsV2Paginator(lister, in)
	for p.HasMorePages() {
		page, err := listPage(ctx, p)
		if err != nil {
			return sum, fmt.Errorf("s3 ListObjectsV2 s3://%s/%s: %w", cfg.Bucket, cfg.Prefix, err)
		}
		var bodies []string
		var last string
		for _, o := range page.Contents {
			sum.Listed++
			key := aws.ToString(o.Key)
			last = key
			if !cfg.selected(key, aws.ToTime(o.LastModified)) {
				sum.Filtered++
				continue
			}
			etag := strings.Trim(aws.ToString(o.ETag), `"`)
			if st != nil {
				r, err := st.Result(ctx, cfg.Bucket, key, cfg.Processor)
				if err != nil {
					return sum, fmt.Errorf("out: %w", err)
				}
				if store.SameVersion(r, "", etag) {
					sum.SkippedDone++
					continue
				}
			}
			size := aws.ToInt64(o.Size)
			if cfg.DryRun {
				sum.WouldSend++
			} else {
				sum.Sent++
			}
			sum.Bytes += size
			top, _, ok := strings.Cut(key, "/")
			if !ok {
				top = ""
			}
			c := sum.ByPrefix[top]
			if c == nil {
				c = &Count{}
				sum.ByPrefix[top] = c
			}
			c.Objects++
			c.Bytes += size
			if !cfg.DryRun {
				bodies = append(bodies, notify.Body(notify.Record{EventName: "ObjectCreated:Put", Bucket: cfg.Bucket, Key: key, Size: size,
					ETag: etag, Sequencer: Sequencer, EventTime: aws.ToTime(o.LastModified)}, ConfigurationID, "palleto-backfill"))
			}
		}
		if len(bodies) > 0 {
			if err := pub.Publish(ctx, bodies); err != nil {
				sum.Sent -= int64(len(bodies)) // this page does not count: it is sent again on resume
				return sum, err
			}
		}
		if cfg.Checkpoint != "" && last != "" && !cfg.DryRun {
			if err := writeCheckpoint(cfg.Checkpoint, checkpoint{Bucket: cfg.Bucket, Prefix: cfg.Prefix, StartAfter: last, Counts: sum,
				At: time.Now().UTC().Format(time.RFC3339)}); err != nil {
				return sum, err
			}
		}
		if cfg.Progress != nil {
			cfg.Progress(sum)
		}
	}
	return sum, nil
}

func listPage(ctx context.Context, p *s3.ListObjectsV2Paginator) (*s3.ListObjectsV2Output, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return p.NextPage(ctx)
}

func (c Config) selected(key string, modified time.Time) bool {
	if !c.Since.IsZero() && modified.Before(c.Since) {
		return false
	}
	if !c.Until.IsZero() && !modified.Before(c.Until) {
		return false
	}
	if len(c.Include) > 0 && !slices.ContainsFunc(c.Include, func(g string) bool { ok, _ := path.Match(g, key); return ok }) {
		return false
	}
	return !slices.ContainsFunc(c.Exclude, func(g string) bool { ok, _ := path.Match(g, key); return ok })
}

// check fails at once, with what S3 or the destination said, when the bucket cannot be listed
// or the destination does not answer.
func check(ctx context.Context, cfg Config, lister ListAPI, pub Publisher) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := lister.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &cfg.Bucket, MaxKeys: aws.Int32(1)}); err != nil {
		return fmt.Errorf("bucket: s3://%s cannot be listed%s: %w", cfg.Bucket, hint(err), err)
	}
	if cfg.DryRun {
		return nil
	}
	return pub.Check(ctx)
}

func hint(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "NoSuchBucket":
			return " (no such bucket)"
		case "AccessDenied", "AccessDeniedException":
			return " (access denied: the credentials need s3:ListBucket, sqs:SendMessage and sqs:GetQueueAttributes)"
		case "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist":
			return " (no such queue)"
		}
	}
	return ""
}

// sendAll sends bodies in SendMessageBatch calls of up to 10 messages (and MaxMessage bytes),
// up to 4 at once, retrying the entries a call failed (with backoff, 5 tries).
func sendAll(ctx context.Context, sender SendAPI, queueURL string, bodies []string) error {
	var batches [][]string
	var cur []string
	size := 0
	for _, b := range bodies {
		if len(b) > MaxMessage {
			return fmt.Errorf("a notification of %d bytes is over SQS's limit of %d", len(b), MaxMessage)
		}
		if len(cur) == 10 || size+len(b) > MaxMessage {
			batches = append(batches, cur)
			cur, size = nil, 0
		}
		cur = append(cur, b)
		size += len(b)
	}
	if len(cur) > 0 {
		batches = append(batches, cur)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(batches))
	slots := make(chan struct{}, 4)
	for i, batch := range batches {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			errs[i] = sendBatch(ctx, sender, queueURL, batch)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func sendBatch(ctx context.Context, sender SendAPI, queueURL string, bodies []string) error {
	pending := map[string]string{}
	for i, b := range bodies {
		pending[strconv.Itoa(i)] = b
	}
	wait := 200 * time.Millisecond
	var last error
	for attempt := 0; attempt < 5 && len(pending) > 0; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
			wait *= 2
		}
		ids := make([]string, 0, len(pending))
		for id := range pending {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		entries := make([]types.SendMessageBatchRequestEntry, len(ids))
		for i, id := range ids {
			entries[i] = types.SendMessageBatchRequestEntry{Id: aws.String(id), MessageBody: aws.String(pending[id])}
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		out, err := sender.SendMessageBatch(cctx, &awssqs.SendMessageBatchInput{QueueUrl: &queueURL, Entries: entries})
		cancel()
		if err != nil {
			last = fmt.Errorf("sqs SendMessageBatch %s: %w", queueURL, err)
			continue
		}
		for _, ok := range out.Successful {
			delete(pending, aws.ToString(ok.Id))
		}
		for _, f := range out.Failed {
			last = fmt.Errorf("sqs SendMessageBatch %s: entry %s: %s: %s", queueURL, aws.ToString(f.Id), aws.ToString(f.Code), aws.ToString(f.Message))
		}
	}
	if len(pending) > 0 {
		return fmt.Errorf("%d notifications not sent after 5 tries: %w", len(pending), last)
	}
	return nil
}

func readCheckpoint(file string) (*checkpoint, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	var cp checkpoint
	if err := json.Unmarshal(data, &cp); err != nil {
		return nil, fmt.Errorf("checkpoint: %s is not a checkpoint of palleto backfill: %v", file, err)
	}
	return &cp, nil
}

// writeCheckpoint replaces file atomically: temp file, fsync, rename, fsync of the directory.
func writeCheckpoint(file string, cp checkpoint) error {
	data, _ := json.MarshalIndent(cp, "", "  ")
	tmp := file + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if _, err = f.Write(append(data, '\n')); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, file)
	}
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if d, err := os.Open(filepath.Dir(file)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
