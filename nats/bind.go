package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// bind finds the stream and the durable consumer, creating them when missing and subject= is
// given, and checks that the consumer suits Palleto: a pull consumer with explicit acks whose
// filter does not take the dead letters back. It sets s.cons and s.ackWait.
func (s *Source) bind(ctx context.Context, ackWait time.Duration, maxInFlight int) error {
	c := s.cfg
	stream, err := ensureStream(ctx, s.js, c, s.log)
	if err != nil {
		return err
	}
	cons, err := stream.Consumer(ctx, c.Consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) && c.Subject != "" {
		cons, err = stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
			Durable: c.Consumer, Description: "palleto", AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait,
			MaxDeliver:    -1, // Palleto's poison guard (--max-receives) decides, and dead-letters
			FilterSubject: c.Subject, DeliverPolicy: jetstream.DeliverAllPolicy, MaxAckPending: max(1000, 4*maxInFlight),
		})
		if errors.Is(err, jetstream.ErrConsumerExists) { // another process created it first
			cons, err = stream.Consumer(ctx, c.Consumer)
		} else if err == nil {
			s.log.Info("NATS consumer created", "stream", c.Stream, "consumer", c.Consumer, "subject", c.Subject, "ack_wait", ackWait.String())
		}
	}
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("nats consumer %s: not found (create a durable pull consumer with explicit acks, or give subject= in the URL to let palleto create it): %w", s.name, err)
	}
	if err != nil {
		return fmt.Errorf("nats consumer %s: %w", s.name, err)
	}
	info := cons.CachedInfo()
	switch {
	case info.Config.DeliverSubject != "":
		return fmt.Errorf("nats consumer %s: a push consumer (deliver subject %q); palleto needs a pull consumer", s.name, info.Config.DeliverSubject)
	case info.Config.AckPolicy != jetstream.AckExplicitPolicy:
		return fmt.Errorf("nats consumer %s: ack policy %s; palleto needs explicit acks (a message is acknowledged only once its result is stored)", s.name, info.Config.AckPolicy)
	}
	if c.DLQ != "" {
		filters := append([]string{info.Config.FilterSubject}, info.Config.FilterSubjects...)
		if info.Config.FilterSubject == "" && len(info.Config.FilterSubjects) == 0 {
			filters = stream.CachedInfo().Config.Subjects
		}
		for _, f := range filters {
			if f != "" && subjectMatches(f, c.DLQ) {
				return fmt.Errorf("dlq: dead letters published to %q would come back to consumer %s (its subject %q takes them): choose a dlq subject outside it", c.DLQ, s.name, f)
			}
		}
	}
	if info.Config.MaxDeliver > 0 {
		s.log.Warn("the NATS consumer stops delivering a message after max_deliver deliveries; such a message is then neither acknowledged nor dead-lettered by palleto: set max_deliver -1 and let --max-receives decide",
			"consumer", s.name, "max_deliver", info.Config.MaxDeliver)
	}
	s.cons, s.ackWait = cons, info.Config.AckWait
	if s.ackWait <= 0 {
		s.ackWait = DefaultAckWait
	}
	return nil
}

// ensureStream finds the stream of c, creating it when missing and subject= is given: file
// storage, work-queue retention (a message acknowledged is gone), capturing the subject and the
// dlq subject (dead letters are kept there, outside the consumer's filter).
func ensureStream(ctx context.Context, js jetstream.JetStream, c Config, log *slog.Logger) (jetstream.Stream, error) {
	stream, err := js.Stream(ctx, c.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) && c.Subject != "" {
		subjects := []string{c.Subject}
		if c.DLQ != "" {
			subjects = append(subjects, c.DLQ)
		}
		stream, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: c.Stream, Subjects: subjects, Storage: jetstream.FileStorage,
			Retention: jetstream.WorkQueuePolicy, Description: "S3 notifications for palleto (created by palleto)"})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // another process created it first
			stream, err = js.Stream(ctx, c.Stream)
		} else if err == nil {
			log.Info("NATS stream created", "stream", c.Stream, "subjects", subjects)
		}
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("nats stream %s: not found (create it, or give subject= in the URL to let palleto create it): %w", c.Stream, err)
	}
	if err != nil {
		return nil, fmt.Errorf("nats stream %s: %w", c.Stream, err)
	}
	return stream, nil
}
