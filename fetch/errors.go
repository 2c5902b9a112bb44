package fetch

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// ErrPermanent is wrapped by errors that are the object's own fault, which retrying cannot fix:
// the object is gone, archived, overwritten since the event, or its name is refused.
var ErrPermanent = errors.New("permanent S3 error")

// ErrUnavailable is wrapped by errors of the world: S3 unreachable, slow, failing, throttling,
// or refusing these credentials (403). They never count against the object: the message waits
// and is tried again, for as long as it lasts.
var ErrUnavailable = errors.New("S3 unavailable")

// permanentCodes are the S3 error codes that are the object's fault.
var permanentCodes = map[string]string{
	"NoSuchKey":               "the object no longer exists (deleted since the event)",
	"NoSuchBucket":            "the bucket does not exist (deleted since the event)",
	"NoSuchVersion":           "the version named by the event no longer exists",
	"PreconditionFailed":      "the object was overwritten since the event (its eTag changed)",
	"InvalidObjectState":      "the object is archived (restore it first)",
	"InvalidBucketName":       "invalid bucket name",
	"KeyTooLongError":         "key too long",
	"InvalidArgument":         "the request names something S3 cannot accept",
	"XMinioInvalidObjectName": "the key is not a valid object name for this server",
}

// worldCodes are codes whose HTTP status (400 or 403) would read as the object's fault, but
// that say the world is not right yet: credentials, permissions, a clock, a region.
var worldCodes = map[string]string{
	"AccessDenied":                 "access denied: these credentials may not read the object (IAM policy, bucket policy or KMS key)",
	"AllAccessDisabled":            "access to the bucket is disabled",
	"AccountProblem":               "the AWS account has a problem",
	"RequestTimeout":               "the request timed out",
	"RequestTimeTooSkewed":         "this machine's clock is off",
	"ExpiredToken":                 "the session token has expired",
	"TokenRefreshRequired":         "the session token must be refreshed",
	"InvalidAccessKeyId":           "the access key is not known",
	"SignatureDoesNotMatch":        "the secret key does not match the access key",
	"InvalidToken":                 "the session token is invalid",
	"PermanentRedirect":            "the bucket is in another region than AWS_REGION",
	"AuthorizationHeaderMalformed": "the credentials or region do not match the bucket's",
}

// Classify wraps err with ErrPermanent when it is the object's fault (a code of permanentCodes;
// for another code, HTTP 400, 404 or 412), with ErrRangeRefused for a range refused (416,
// InvalidRange: S3's answer about that object, retryable, never an outage) and with
// ErrUnavailable when it is the world's (everything else: 403, 5xx, throttling, timeouts,
// resets, the codes of worldCodes). The cancellation of ctx (a shutdown) is returned as it is.
func Classify(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, ErrPermanent) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrRangeRefused) {
		return err
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return err
	}
	if invalidRange(err) {
		return fmt.Errorf("%w: %w", ErrRangeRefused, err)
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		if why, ok := worldCodes[api.ErrorCode()]; ok {
			return fmt.Errorf("%w: %s: %w", ErrUnavailable, why, err)
		}
		if why, ok := permanentCodes[api.ErrorCode()]; ok {
			return fmt.Errorf("%w: %s: %w", ErrPermanent, why, err)
		}
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusBadRequest, http.StatusNotFound, http.StatusPreconditionFailed:
			return fmt.Errorf("%w: HTTP %d: %w", ErrPermanent, re.HTTPStatusCode(), err)
		case http.StatusForbidden:
			return fmt.Errorf("%w: access denied (HTTP 403): %w", ErrUnavailable, err)
		}
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
