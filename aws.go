package palleto

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/logging"
)

// ClientOptions shape the SDK clients AWSClientsWith builds.
type ClientOptions struct {
	// Conns sizes the HTTP connection pool per host (workers + pollers).
	Conns int
	// ConnectTimeout bounds each TCP connect and TLS handshake (default 10s).
	ConnectTimeout time.Duration
	// QueueURL, when set, is the queue the SQS client will call: when no SQS endpoint is
	// configured and the URL's host is not AWS's, its scheme and host become the endpoint; when
	// one is configured and names another host, Logger is warned.
	QueueURL string
	Logger   *slog.Logger
}

// AWSClients is AWSClientsWith with a pool of conns connections and the default timeouts.
func AWSClients(ctx context.Context, conns int) (*awssqs.Client, *s3.Client, error) {
	return AWSClientsWith(ctx, ClientOptions{Conns: conns})
}

// AWSClientsWith loads the standard AWS configuration (credential chain, AWS_REGION,
// AWS_PROFILE, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL_S3 and the shared config
// files) and returns SQS and S3 clients, each on its own HTTP client with a connect deadline. S3
// uses path-style addressing whenever a custom endpoint is set, as MinIO and other
// S3-compatible servers need.
func AWSClientsWith(ctx context.Context, o ClientOptions) (*awssqs.Client, *s3.Client, error) {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	httpClient := func() *awshttp.BuildableClient {
		return awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConns = max(100, 2*o.Conns)
			t.MaxIdleConnsPerHost = max(10, o.Conns)
			t.TLSHandshakeTimeout = o.ConnectTimeout
		}).WithDialerOptions(func(d *net.Dialer) { d.Timeout = o.ConnectTimeout })
	}
	cfg, err := config.LoadDefaultConfig(ctx, config.WithHTTPClient(httpClient()), config.WithLogger(sdkLogger{o.Logger}))
	if err != nil {
		return nil, nil, fmt.Errorf("aws config: %w", err)
	}
	if cfg.Region == "" {
		return nil, nil, fmt.Errorf("aws config: no region: set AWS_REGION (or a region in your AWS profile)")
	}
	customS3 := os.Getenv("AWS_ENDPOINT_URL_S3") != "" || cfg.BaseEndpoint != nil
	s3c := s3.NewFromConfig(cfg, func(s *s3.Options) {
		s.HTTPClient = httpClient()
		if customS3 {
			s.UsePathStyle = true
		}
		// Plain-HTTP local servers cannot take streamed uploads with trailing checksums; real S3
		// over HTTPS keeps its defaults for everything but that.
		s.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		// Objects uploaded without a checksum are common; skipping their validation is not news.
		s.DisableLogOutputChecksumValidationSkipped = true
	})
	endpoint := sqsEndpoint(cfg, o)
	sqsc := awssqs.NewFromConfig(cfg, func(s *awssqs.Options) {
		s.HTTPClient = httpClient()
		if endpoint != "" {
			s.BaseEndpoint = aws.String(endpoint)
		}
	})
	return sqsc, s3c, nil
}

// sqsEndpoint returns the endpoint to give the SQS client when the queue URL must provide it
// (no endpoint configured and a host that is not AWS's), or "". With an endpoint configured
// that names another host than the queue URL (AWS's too), it warns once, saying which is used:
// the SDK calls the endpoint, and the queue URL's host is ignored.
func sqsEndpoint(cfg aws.Config, o ClientOptions) string {
	u, err := url.Parse(o.QueueURL)
	if err != nil || u.Host == "" {
		return ""
	}
	configured := os.Getenv("AWS_ENDPOINT_URL_SQS")
	if configured == "" && cfg.BaseEndpoint != nil {
		configured = *cfg.BaseEndpoint
	}
	if configured == "" {
		if isAWSHost(u.Hostname()) {
			return ""
		}
		return u.Scheme + "://" + u.Host
	}
	if c, err := url.Parse(configured); err == nil && c.Host != u.Host {
		// Said once, at start: an AWS_ENDPOINT_URL_SQS left exported from a devstack session
		// would otherwise quietly take a real queue URL's calls.
		l := o.Logger
		if l == nil {
			l = slog.Default()
		}
		l.Warn(fmt.Sprintf("the SQS endpoint configured (%s) and the queue URL's host (%s) differ: calls go to %s; unset AWS_ENDPOINT_URL_SQS (and AWS_ENDPOINT_URL) to call %s",
			configured, u.Host, configured, u.Scheme+"://"+u.Host), "endpoint", configured, "queue_url", o.QueueURL)
	}
	return ""
}

func isAWSHost(host string) bool {
	return strings.HasSuffix(host, ".amazonaws.com") || strings.HasSuffix(host, ".amazonaws.com.cn") || strings.HasSuffix(host, ".api.aws")
}

// sdkLogger passes the SDK's own log lines (such as "falling back to IMDSv1" on a machine with
// no instance metadata) to Palleto's logger, so they come out in its format, text or JSON, with
// its level; without a logger, to slog's default.
type sdkLogger struct{ l *slog.Logger }

func (s sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	l := s.l
	if l == nil {
		l = slog.Default()
	}
	level := slog.LevelInfo
	switch c {
	case logging.Warn:
		level = slog.LevelWarn
	case logging.Debug:
		level = slog.LevelDebug
	}
	l.Log(context.Background(), level, "aws sdk: "+fmt.Sprintf(format, v...))
}
