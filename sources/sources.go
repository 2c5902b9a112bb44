// Package sources registers every source Palleto ships with queue.Register, for `--source URL`
// (queue.Open). Import it for its side effect, as cmd/palleto does:
//
//	import _ "github.com/palleto/palleto/sources"
//
// A new source is one package that registers itself in an init function, and one line here.
package sources

import (
	_ "github.com/palleto/palleto/amqp"    // amqp://USER:PASS@HOST:5672/VHOST?queue=Q
	_ "github.com/palleto/palleto/kafka"   // kafka://HOST:9092/TOPIC?group=G
	_ "github.com/palleto/palleto/nats"    // nats://HOST:PORT/STREAM/CONSUMER
	_ "github.com/palleto/palleto/sqs"     // https://sqs.REGION.amazonaws.com/ACCOUNT/NAME
	_ "github.com/palleto/palleto/webhook" // http://127.0.0.1:PORT/PATH (after SQS's match)
)
