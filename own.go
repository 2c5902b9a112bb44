package palleto

import (
	"slices"

	"github.com/palleto/palleto/store"
)

// Never process what Palleto wrote. A results store inside a bucket the daemon also reads (an
// s3:// store) writes results, failure records, copies and its readiness object there, and each
// write is an ObjectCreated event of its own: processed, it would make another result, for ever
// (the recursive loop AWS had to build detection for in Lambda). Events for keys the store owns
// are skipped before anything else (before the --bucket allowlist, whose refusals would be
// recorded, and so written, too): one log line and palleto_objects_skipped_total{reason="own_output"},
// never a failure record, never a write.

// ownOutput reports whether bucket/key is something the daemon's store wrote.
func (d *Daemon) ownOutput(bucket, key string) bool {
	o, ok := d.store.(store.Owner)
	return ok && o.Owns(bucket, key)
}

// warnOwnOutput says at start when the store writes into a bucket the daemon reads (it is in
// the --bucket allowlist, or there is none) and --include/--exclude do not keep its prefix out:
// the events of its writes are skipped, but each still costs a message, so the bucket's
// notification (or a filter) should leave the prefix out.
func (d *Daemon) warnOwnOutput() {
	o, ok := d.store.(store.Owner)
	if !ok {
		return
	}
	bucket, prefix := o.Owned()
	if len(d.cfg.Buckets) > 0 && !slices.Contains(d.cfg.Buckets, bucket) {
		return
	}
	samples := []string{prefix + "_palleto/ready.json", prefix + "_failed/" + bucket + "/k.json", prefix + bucket + "/k.json"}
	if !slices.ContainsFunc(samples, d.wanted) {
		return // --include/--exclude leave the prefix out
	}
	where := "s3://" + bucket + "/" + prefix
	d.log.Warn("the results store writes into a bucket this daemon reads: the events of its own writes will be skipped (palleto_objects_skipped_total{reason=\"own_output\"}), but each costs a message; "+
		"leave its prefix out of the bucket's notification (a prefix filter on the keys to process, docs/DEPLOY.md), or --include/--exclude patterns that leave it out",
		"out", where, "bucket", bucket, "prefix", prefix)
}
