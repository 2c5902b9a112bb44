package palleto

import (
	"context"

	"github.com/palleto/palleto/decode"
	"github.com/palleto/palleto/status"
)

// StatusPage returns the tracker of d's status page (package status), which d's metrics
// (Deps.Metrics, required for it) tell what happens and serve beside /metrics. Call it once,
// before Run, and Start the tracker. version is shown as given.
func (d *Daemon) StatusPage(version string) *status.Tracker {
	src := d.cfg.Source
	if src == "" {
		src = d.cfg.SQS.QueueURL
	}
	t := status.New(status.Config{
		Version: version, Inflate: decode.Inflater, Source: src, Store: d.store.String(),
		Dependencies: []string{depS3, depStore, d.source()},
		Counts: func() status.Counts {
			mc := d.met.Counts()
			return status.Counts{Received: mc.Received, Done: d.stats.objects.Load(), AlreadyDone: d.stats.already.Load(),
				Failed: d.stats.failed.Load(), Retried: mc.Retried, DeadLettered: mc.DeadLettered, Skipped: d.stats.skipped.Load(),
				Bytes: d.stats.bytes.Load()}
		},
		Depth: func(ctx context.Context) (int, int, error) {
			v, f, err := d.QueueDepth(ctx)
			if err == nil {
				d.met.QueueDepth(v, f)
			}
			return v, f, err
		},
		OldestAge: d.met.OldestWait,
	})
	d.met.SetStatus(t)
	return t
}
