package palleto

import (
	"testing"
	"time"
)

// TestUnrecordedIsForgottenOnceAnotherReplicaHasIt: a message whose failure could not be
// recorded counts (run --exit-when-idle exits 1 for it) until a later delivery of it is recorded
// or done here, or until it is overdue by a visibility timeout: it came back to the queue and
// another replica took it, finished it, or the redrive moved it.
func TestUnrecordedIsForgottenOnceAnotherReplicaHasIt(t *testing.T) {
	d := &Daemon{}
	d.cfg.SQS.VisibilityTimeout = 30 * time.Second
	d.cfg.RetryBackoff = 10 * time.Second
	t0 := time.Now()
	d.noteUnrecordedAt("a", true, t0)
	d.noteUnrecordedAt("b", true, t0.Add(time.Minute))
	// a is retried after its visibility timeout at the latest (30s): it counts while it may
	// still come back here, and one visibility timeout more.
	if n := d.unrecordedAt(t0.Add(59 * time.Second)); n != 2 {
		t.Errorf("59s after: %d unrecorded, want 2", n)
	}
	if n := d.unrecordedAt(t0.Add(61 * time.Second)); n != 1 {
		t.Errorf("61s after: %d unrecorded, want 1 (a is another replica's by now)", n)
	}
	d.noteUnrecordedAt("b", false, t0.Add(70*time.Second)) // b came back here and was recorded
	if n := d.unrecordedAt(t0.Add(70 * time.Second)); n != 0 {
		t.Errorf("%d unrecorded after b was recorded, want 0", n)
	}
}
