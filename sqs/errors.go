package sqs

import (
	"errors"

	"github.com/aws/smithy-go"
)

// hints is SQS's error table: what an error code says about the world, in words a user can act
// on. Every SQS error is a failure of the world, never of a message: the caller backs off and
// tries again, for as long as it lasts (a queue recreated, a policy fixed, a token refreshed).
var hints = map[string]string{
	"AWS.SimpleQueueService.NonExistentQueue": "the queue does not exist: check the URL and the region (AWS_REGION)",
	"QueueDoesNotExist":                       "the queue does not exist: check the URL and the region (AWS_REGION)",
	"InvalidAddress":                          "the queue URL is not an address SQS accepts",
	"AccessDenied":                            "access denied: the credentials may not use this queue (IAM policy or queue policy)",
	"AccessDeniedException":                   "access denied: the credentials may not use this queue (IAM policy or queue policy)",
	"KmsAccessDenied":                         "the queue is encrypted with a KMS key these credentials may not use",
	"KmsDisabled":                             "the queue's KMS key is disabled",
	"InvalidClientTokenId":                    "the access key is not known to AWS: check the credentials",
	"UnrecognizedClientException":             "the access key is not known to AWS: check the credentials",
	"InvalidAccessKeyId":                      "the access key is not known: check the credentials",
	"SignatureDoesNotMatch":                   "the secret key does not match the access key",
	"ExpiredToken":                            "the session token has expired: refresh the credentials",
	"RequestThrottled":                        "SQS is throttling the calls",
	"ThrottlingException":                     "SQS is throttling the calls",
}

// Hint returns "; " and what err says about the world, or "" when the table has nothing to add.
func Hint(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		if h, ok := hints[api.ErrorCode()]; ok {
			return " (" + h + ")"
		}
		return ""
	}
	if err != nil {
		return " (SQS could not be reached: check the network, AWS_ENDPOINT_URL_SQS and the credentials)"
	}
	return ""
}
