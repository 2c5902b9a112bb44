package palleto

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
)

// AWSClients loads the standard AWS configuration (credential chain, AWS_REGION, AWS_PROFILE,
// AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL_S3 and the shared config files) and
// returns SQS and S3 clients. S3 uses path-style addressing whenever a custom endpoint is set, as
// MinIO and other S3-compatible servers need. conns sizes the HTTP connection pool per host.
func AWSClients(ctx context.Context, conns int) (*awssqs.Client, *s3.Client, error) {
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConns = max(100, 2*conns)
		t.MaxIdleConnsPerHost = max(10, conns)
	})
	cfg, err := config.LoadDefaultConfig(ctx, config.WithHTTPClient(httpClient))
	if err != nil {
		return nil, nil, fmt.Errorf("aws config: %w", err)
	}
	if cfg.Region == "" {
		return nil, nil, fmt.Errorf("aws config: no region: set AWS_REGION (or a region in your AWS profile)")
	}
	customS3 := os.Getenv("AWS_ENDPOINT_URL_S3") != "" || cfg.BaseEndpoint != nil
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if customS3 {
			o.UsePathStyle = true
		}
		// Plain-HTTP local servers cannot take streamed uploads with trailing checksums; real S3
		// over HTTPS keeps its defaults for everything but that.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		// Objects uploaded without a checksum are common; skipping their validation is not news.
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	return awssqs.NewFromConfig(cfg), s3c, nil
}
