// Command webhookbridge forwards MinIO's webhook bucket notifications to SQS, as S3 itself
// would deliver them: each POSTed event body becomes one SQS message, on the queue named like the
// event's bucket (queues that do not exist are skipped). For tests and development only.
//
//	webhookbridge -listen 127.0.0.1:19400 -sqs-endpoint http://127.0.0.1:19324
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log"
	"net/http"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:19400", "address to listen on")
	endpoint := flag.String("sqs-endpoint", "http://127.0.0.1:19324", "SQS endpoint")
	flag.Parse()
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithRegion("us-east-1"), config.WithBaseEndpoint(*endpoint))
	if err != nil {
		log.Fatal(err)
	}
	client := sqs.NewFromConfig(cfg)
	var mu sync.Mutex
	urls := map[string]string{}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil || r.Method != http.MethodPost || len(body) == 0 {
			w.WriteHeader(http.StatusOK) // MinIO's reachability probe
			return
		}
		var ev struct {
			Records []struct {
				S3 struct {
					Bucket struct {
						Name string `json:"name"`
					} `json:"bucket"`
				} `json:"s3"`
			} `json:"Records"`
		}
		if json.Unmarshal(body, &ev) != nil || len(ev.Records) == 0 {
			log.Printf("not an event, ignored: %.200s", body)
			return
		}
		bucket := ev.Records[0].S3.Bucket.Name
		mu.Lock()
		url, ok := urls[bucket]
		mu.Unlock()
		if !ok {
			out, err := client.GetQueueUrl(r.Context(), &sqs.GetQueueUrlInput{QueueName: aws.String(bucket)})
			var missing *types.QueueDoesNotExist
			if errors.As(err, &missing) {
				log.Printf("no queue named %q; event dropped", bucket)
				return
			}
			if err != nil {
				log.Printf("GetQueueUrl %s: %v", bucket, err)
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			url = aws.ToString(out.QueueUrl)
			mu.Lock()
			urls[bucket] = url
			mu.Unlock()
		}
		if _, err := client.SendMessage(r.Context(), &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String(string(body))}); err != nil {
			log.Printf("SendMessage %s: %v", url, err)
			mu.Lock()
			delete(urls, bucket)
			mu.Unlock()
			http.Error(w, err.Error(), http.StatusBadGateway)
		}
	})
	log.Printf("webhookbridge on %s -> %s", *listen, *endpoint)
	log.Fatal(http.ListenAndServe(*listen, nil))
}
