package palleto

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/palleto/palleto/breaker"
	"github.com/palleto/palleto/engine"
	"github.com/palleto/palleto/fetch"
)

// The daemon's dependencies in the breaker (package breaker): S3 is one per bucket, so that one
// bucket that refuses us (or a forged event naming one) never stops the others; the results
// store is one, needed by every message.
func s3Key(bucket string) breaker.Key { return breaker.Key{Dep: depS3, Scope: bucket} }

var storeKey = breaker.Key{Dep: depStore}

func (d *Daemon) newBreaker() *breaker.Breaker {
	return breaker.New(breaker.Config{Logger: d.log, OnChange: func(k breaker.Key, open bool, openOfDep int, why error) {
		d.met.DependencyDown(k.Dep, openOfDep > 0)     // palleto_dependency_up{dependency="s3"}: 0 while any bucket is down
		d.met.DependencyStatus(k.String(), !open, why) // the status page: each bucket on its own line
	}})
}

// BucketAPI is the S3 call the daemon probes a bucket with: HeadBucket (IAM s3:ListBucket on the
// bucket), the check that the bucket answers these credentials. *s3.Client implements it. An S3
// client without it (or a role without s3:ListBucket) is probed with a one-byte GET of the last
// object of that bucket that was read fine; with neither, a 403 is taken as the bucket's.
type BucketAPI interface {
	HeadBucket(ctx context.Context, in *s3.HeadBucketInput, opts ...func(*s3.Options)) (*s3.HeadBucketOutput, error)
}

// probeBucket says whether bucket answers these credentials (nil), or why not (an error wrapping
// fetch.ErrUnavailable): never a GET of an object that failed, which may be that object's own
// trouble.
func (d *Daemon) probeBucket(ctx context.Context, bucket string) error {
	err := errors.New("no HeadBucket")
	if api, ok := d.deps.S3.(BucketAPI); ok {
		_, err = api.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &bucket})
		if err == nil {
			return nil
		}
		err = fetch.Classify(ctx, fmt.Errorf("s3 HeadBucket %s (probe): %w", bucket, err))
		if !errors.Is(err, fetch.ErrUnavailable) {
			return nil // S3 answered: the bucket is gone, say; its objects fail on their own
		}
		if !accessDenied(err) {
			return err
		}
	}
	if key, ok := d.goodKey(bucket); ok { // HeadBucket refused (no s3:ListBucket?) or missing
		if gerr := d.fetch.Probe(ctx, bucket, key); gerr != nil {
			return gerr
		}
		return nil
	}
	if errors.Is(err, fetch.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: bucket %s: no way to probe it (%v) and no object of it read yet", fetch.ErrUnavailable, bucket, err)
}

// accessDenied reports whether err is S3 refusing these credentials (HTTP 403, AccessDenied).
func accessDenied(err error) bool {
	var api smithy.APIError
	if errors.As(err, &api) && (api.ErrorCode() == "AccessDenied" || api.ErrorCode() == "Forbidden") {
		return true
	}
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusForbidden
}

// ErrObjectDenied is wrapped by the error of an object S3 refuses to these credentials while its
// bucket answers them (a KMS key or an object policy the role may not use): the object's own
// failure, retried and counted by the poison guard, so it can never hold the others back.
var ErrObjectDenied = errors.New("access denied to this object while its bucket answers")

// deniedAlone turns a 403 on one object into the object's own failure when its bucket answers
// the probe; it returns err as it is otherwise (the bucket refuses us: the world's).
func (d *Daemon) deniedAlone(ctx context.Context, bucket, where string, err error) error {
	if !errors.Is(err, fetch.ErrUnavailable) || !accessDenied(err) {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if perr := d.probeBucket(pctx, bucket); perr != nil {
		return err
	}
	cause := strings.TrimPrefix(err.Error(), fetch.ErrUnavailable.Error()+": ")
	return fmt.Errorf("%w: %s (a KMS key or an object policy these credentials may not use): %s", ErrObjectDenied, where, cause)
}

// goodKeys remembers, per bucket, the last object read fine: the fallback probe of the bucket.
// Bounded: past maxGoodKeys buckets, one is forgotten for each new one.
type goodKeys struct {
	mu   sync.Mutex
	keys map[string]string
}

const maxGoodKeys = 1000

func (d *Daemon) noteGood(bucket, key string) {
	g := &d.good
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.keys == nil {
		g.keys = map[string]string{}
	}
	if _, ok := g.keys[bucket]; !ok && len(g.keys) >= maxGoodKeys {
		for b := range g.keys {
			delete(g.keys, b)
			break
		}
	}
	g.keys[bucket] = key
}

func (d *Daemon) goodKey(bucket string) (string, bool) {
	d.good.mu.Lock()
	defer d.good.mu.Unlock()
	k, ok := d.good.keys[bucket]
	return k, ok
}

// s3Failure is what the breaker is told of a failure of S3 for bucket: its probe is the bucket's.
func (d *Daemon) s3Failure(bucket string, err error) bool {
	return d.health.Failure(s3Key(bucket), err, func(ctx context.Context) error { return d.probeBucket(ctx, bucket) })
}

// A batch run (--exit-when-idle) waits for a dependency that pauses receiving, as a daemon does,
// for up to pausedIdleAfter (or --exit-when-idle, when longer): a short outage is waited out and
// the run finishes its work. Past that, its polls count as empty ones (one each gatedPollEvery,
// and no trial receives), so the run ends, and says how many messages it leaves undone, instead
// of waiting for ever.
const (
	pausedIdleAfter = 2 * time.Minute
	gatedPollEvery  = time.Second
)

func (d *Daemon) idleAfterPause() time.Duration {
	if d.pausedIdleAfter > 0 { // tests
		return d.pausedIdleAfter
	}
	return max(pausedIdleAfter, d.cfg.Engine.ExitWhenIdle)
}

// gate waits while the breaker pauses receiving (the results store down, or S3 of every bucket
// known, but for a trial receive each 10s). It reports true when the poll may go to the source;
// false for a poll to count as an empty one (a batch run paused for longer than idleAfterPause);
// an error only when ctx ends.
func (d *Daemon) gate(ctx context.Context) (receive bool, err error) {
	for {
		ok, wake, retry := d.health.Admit()
		since := d.health.PausedSince()
		giveUp := d.givingUp()
		if ok && !giveUp {
			return true, nil
		}
		if giveUp {
			t := time.NewTimer(gatedPollEvery)
			select {
			case <-t.C:
				d.gatedPolls.Add(1)
				return false, nil
			case <-ctx.Done():
				t.Stop()
				return false, ctx.Err()
			}
		}
		var trial, later <-chan time.Time
		var timers []*time.Timer
		if retry > 0 {
			t := time.NewTimer(retry)
			timers, trial = append(timers, t), t.C
		}
		if d.cfg.Engine.ExitWhenIdle > 0 && !since.IsZero() {
			t := time.NewTimer(d.idleAfterPause() - time.Since(since))
			timers, later = append(timers, t), t.C
		}
		select {
		case <-wake:
		case <-trial:
		case <-later:
		case <-ctx.Done():
		}
		for _, t := range timers {
			t.Stop()
		}
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
	}
}

// gatedPoll reports whether p is a poll the gate answered (an empty one that asked nothing of
// the source), so the receive metrics do not count it.
func (d *Daemon) gatedPoll(p engine.PollDone) bool {
	if p.Items != 0 || p.Err != nil {
		return false
	}
	for {
		n := d.gatedPolls.Load()
		if n <= 0 {
			return false
		}
		if d.gatedPolls.CompareAndSwap(n, n-1) {
			return true
		}
	}
}
