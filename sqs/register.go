package sqs

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/palleto/palleto/queue"
)

// Name is the SQS source's name in the registry, in metrics and in the log.
const Name = "sqs"

func init() {
	queue.Register("https", Name, IsQueueURL, open)
	queue.Register("http", Name, IsQueueURL, open)
}

// Setup is what the daemon gives an SQS source it opens through queue.Open, in
// queue.Options.Client: the API client built from the standard AWS configuration, and the
// source's own settings and hooks. Its Config is used as it is, but for QueueURL, which is the
// URL opened.
type Setup struct {
	API    API
	Config Config
	Hooks  Hooks
}

// accountPath is the path SQS gives a queue: /ACCOUNT/NAME, ACCOUNT being 12 digits (AWS, and
// the local servers that imitate it: LocalStack, ElasticMQ, local-aws-sqs, the devstack).
var accountPath = regexp.MustCompile(`^/[0-9]{12}/[A-Za-z0-9_-]{1,80}(\.fifo)?/?$`)

// IsQueueURL reports whether u is an SQS queue URL that --source may name: a host of AWS's
// (sqs.REGION.amazonaws.com, any *.amazonaws.com or *.api.aws), the host of
// AWS_ENDPOINT_URL_SQS or AWS_ENDPOINT_URL when one is set (a local SQS), or any http(s) URL
// whose path is /ACCOUNT/NAME with a 12-digit account, the form every SQS queue URL has. Other
// http(s) URLs are not SQS's (a webhook's /PATH); --queue-url takes any URL as SQS's.
func IsQueueURL(u *url.URL) bool {
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return false
	}
	if isAWSHost(u.Hostname()) || accountPath.MatchString(u.Path) {
		return true
	}
	for _, env := range []string{"AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL"} {
		if e, err := url.Parse(os.Getenv(env)); err == nil && e.Host != "" && sameHost(e, u) {
			return true
		}
	}
	return false
}

func isAWSHost(host string) bool {
	host = strings.ToLower(host)
	return strings.HasSuffix(host, ".amazonaws.com") || strings.HasSuffix(host, ".amazonaws.com.cn") || strings.HasSuffix(host, ".api.aws")
}

// sameHost compares host and port, the port defaulting by scheme, and takes localhost and the
// loopback addresses as one host (an endpoint of http://localhost:4566 and a queue URL of
// http://127.0.0.1:4566/... name the same server).
func sameHost(a, b *url.URL) bool {
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		if u.Scheme == "https" {
			return "443"
		}
		return "80"
	}
	if port(a) != port(b) {
		return false
	}
	ha, hb := strings.ToLower(a.Hostname()), strings.ToLower(b.Hostname())
	return ha == hb || loopback(ha) && loopback(hb)
}

func loopback(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// open is the registry's opener: the queue of u, with the Setup the daemon gave (or the
// settings of opts and a client of the standard AWS configuration).
func open(ctx context.Context, u *url.URL, opts queue.Options) (queue.Source, error) {
	cfg := DefaultConfig()
	hooks := Hooks{Trace: opts.Trace}
	var api API
	switch c := opts.Client.(type) {
	case *Setup:
		api, cfg, hooks = c.API, c.Config, c.Hooks
	case API:
		api = c
	}
	if _, ok := opts.Client.(*Setup); !ok {
		if opts.AckTimeout > 0 {
			cfg.VisibilityTimeout = opts.AckTimeout
		}
		cfg.WaitTime, cfg.CallTimeout = min(opts.WaitTime, 20*time.Second), opts.CallTimeout
	}
	cfg.QueueURL = u.String()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if api == nil {
		c, err := newClient(ctx, u)
		if err != nil {
			return nil, err
		}
		api = c
	}
	return New(api, cfg, opts.Logger, hooks), nil
}

// newClient is an SQS client of the standard AWS configuration, calling the queue URL's host
// when no endpoint is configured and the host is not AWS's (a local SQS).
func newClient(ctx context.Context, u *url.URL) (*awssqs.Client, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqs: aws config: %w", err)
	}
	if cfg.Region == "" {
		return nil, fmt.Errorf("sqs: aws config: no region: set AWS_REGION (or a region in your AWS profile)")
	}
	local := os.Getenv("AWS_ENDPOINT_URL_SQS") == "" && cfg.BaseEndpoint == nil && !isAWSHost(u.Hostname())
	return awssqs.NewFromConfig(cfg, func(o *awssqs.Options) {
		if local {
			o.BaseEndpoint = aws.String(u.Scheme + "://" + u.Host)
		}
	}), nil
}
