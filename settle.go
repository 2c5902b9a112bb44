package palleto

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/palleto/palleto/sink"
	"github.com/palleto/palleto/sqs"
)

// settle decides a handled message's fate. Success: delete. Permanent failure (or the poison
// guard): record, dead-letter if configured, delete. Retryable failure: record, make the message
// visible again after a backoff. Shutdown: hand it back. A message is deleted only after every
// record of what happened to it is on disk.
func (d *Daemon) settle(m *sqs.Message, err error) {
	d.stats.messages.Add(1)
	if err == nil {
		d.tracef("sqs: message %s done; deleting", m.ID)
		d.src.Delete(m)
		return
	}
	var fails []objectFailure
	var me *MessageError
	if errors.As(err, &me) {
		fails = me.Failures
	} else { // a panic, or another error from outside handle
		fails = []objectFailure{{Err: err}}
	}
	class := ClassPermanent
	for _, f := range fails {
		switch classify(f.Err) {
		case classShutdown:
			if class != ClassRetryable {
				class = classShutdown
			}
		case ClassRetryable:
			class = ClassRetryable
		}
	}
	if class == classShutdown {
		d.log.Info("message interrupted by shutdown; handing it back", "message_id", m.ID)
		d.release([]*sqs.Message{m})
		return
	}
	promoted := class == ClassRetryable && d.cfg.MaxReceives > 0 && m.ReceiveCount >= d.cfg.MaxReceives
	dlqClass := class
	if promoted {
		class, dlqClass = ClassPermanent, ClassPermanent+" (max-receives)"
	}
	// Used for a retryable failure, and for a permanent one whose record or dead letter failed.
	delay := d.backoff(m.ReceiveCount)
	action := "deleted"
	switch {
	case class == ClassRetryable:
		action = "retry in " + delay.String()
	case d.cfg.DLQURL != "":
		action = "dead-lettered"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recorded := true
	for _, f := range fails {
		d.stats.failed.Add(1)
		msg := f.Err.Error()
		if promoted {
			msg = fmt.Sprintf("received %d times (max-receives %d); last error: %s", m.ReceiveCount, d.cfg.MaxReceives, msg)
		}
		rec := sink.Failure{Bucket: f.Record.Bucket, Key: f.Record.Key, VersionID: f.Record.VersionID, ETag: f.Record.ETag,
			MessageID: m.ID, Class: class, Error: msg, ReceiveCount: m.ReceiveCount, Action: action, At: time.Now().UTC()}
		if f.Record.Bucket == "" {
			rec.Body = truncate(string(m.Body), 4096)
		}
		path, werr := d.sink.WriteFailure(rec)
		if werr != nil {
			recorded = false
			d.log.Error("CANNOT RECORD FAILURE (disk full or not writable?); the message is kept and retried", "message_id", m.ID, "error", werr)
		}
		d.log.Warn("object failed", "bucket", rec.Bucket, "key", rec.Key, "class", class, "error", msg,
			"receive_count", m.ReceiveCount, "action", action, "record", path, "message_id", m.ID)
	}
	if class == ClassPermanent && recorded && d.cfg.DLQURL != "" {
		if err := d.deadLetter(ctx, m, fails[0].Err, dlqClass); err != nil {
			d.log.Error("dead-letter send failed; the message is kept and retried", "message_id", m.ID, "dlq_url", d.cfg.DLQURL, "error", err)
			recorded = false
		} else {
			d.met.DeadLettered()
		}
	}
	if class == ClassPermanent && recorded {
		d.tracef("sqs: message %s failed permanently (%s); deleting", m.ID, action)
		d.src.Delete(m)
		return
	}
	d.tracef("sqs: message %s failed; visible again in %s", m.ID, delay)
	d.met.Returned("retry", 1)
	if err := d.src.Retry(ctx, m, delay); err != nil {
		d.log.Warn("could not set retry backoff; the message returns after its visibility timeout", "message_id", m.ID, "error", err)
	}
}

// backoff is RetryBackoff doubled for each receipt after the first, capped at 15 minutes.
func (d *Daemon) backoff(receiveCount int) time.Duration {
	b := d.cfg.RetryBackoff
	for i := 1; i < receiveCount && b < 15*time.Minute; i++ {
		b *= 2
	}
	return min(b, 15*time.Minute)
}

func (d *Daemon) release(msgs []*sqs.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d.met.Returned("shutdown", len(msgs))
	if err := d.src.Release(ctx, msgs); err != nil {
		d.log.Warn("could not hand unstarted messages back; they return after their visibility timeout", "messages", len(msgs), "error", err)
		return
	}
	d.log.Info("messages handed back, visible at once", "messages", len(msgs))
}

// deadLetter sends m's body to the DLQ with the cause and its class in message attributes.
func (d *Daemon) deadLetter(ctx context.Context, m *sqs.Message, cause error, class string) error {
	attr := func(v string) types.MessageAttributeValue {
		return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(truncate(v, 1024))}
	}
	_, err := d.deps.SQS.SendMessage(ctx, &awssqs.SendMessageInput{
		QueueUrl:    &d.cfg.DLQURL,
		MessageBody: aws.String(string(m.Body)),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"palleto_error":         attr(cause.Error()),
			"palleto_class":         attr(class),
			"palleto_receive_count": {DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(m.ReceiveCount))},
			"palleto_source_queue":  attr(d.cfg.SQS.QueueURL),
			"palleto_message_id":    attr(m.ID),
		},
	})
	return err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "...(truncated)"
}
