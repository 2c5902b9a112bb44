package backfill

import (
	"context"
	"fmt"

	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Publisher takes the notifications a backfill sends: the SQS queue of --queue-url (SQS), or
// what --to names (a queue.Publisher: a NATS stream's subject, ...).
type Publisher interface {
	// Publish sends every body at least once, returning once the destination took them all.
	Publish(ctx context.Context, bodies []string) error
	// Check fails when the destination does not answer; its error names the setting.
	Check(ctx context.Context) error
}

// SQS is the Publisher of an SQS queue: SendMessageBatch, 10 at a time.
func SQS(sender SendAPI, queueURL string) Publisher { return sqsPublisher{sender, queueURL} }

type sqsPublisher struct {
	sender   SendAPI
	queueURL string
}

func (p sqsPublisher) Publish(ctx context.Context, bodies []string) error {
	return sendAll(ctx, p.sender, p.queueURL, bodies)
}

func (p sqsPublisher) Check(ctx context.Context) error {
	_, err := p.sender.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{QueueUrl: &p.queueURL,
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
	if err != nil {
		return fmt.Errorf("queue-url: %s does not answer%s: %w", p.queueURL, hint(err), err)
	}
	return nil
}
