package fetch

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

func respErr(status int) error {
	return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: errors.New("x")}
}

func TestClassify(t *testing.T) {
	for _, tt := range []struct {
		name      string
		err       error
		permanent bool
	}{
		{"NoSuchKey", &smithy.GenericAPIError{Code: "NoSuchKey"}, true},
		{"AccessDenied", &smithy.GenericAPIError{Code: "AccessDenied"}, true},
		{"PreconditionFailed (overwritten since the event)", &smithy.GenericAPIError{Code: "PreconditionFailed"}, true},
		{"SlowDown", &smithy.GenericAPIError{Code: "SlowDown"}, false},
		{"InternalError", &smithy.GenericAPIError{Code: "InternalError"}, false},
		{"bare 404", respErr(404), true},
		{"bare 403", respErr(403), true},
		{"bare 503", respErr(503), false},
		{"connection reset", errors.New("read: connection reset by peer"), false},
	} {
		err := Classify(fmt.Errorf("s3 GetObject b/k: %w", tt.err))
		if errors.Is(err, ErrPermanent) != tt.permanent {
			t.Errorf("%s: permanent = %v, want %v (%v)", tt.name, !tt.permanent, tt.permanent, err)
		}
		if !errors.Is(err, tt.err) {
			t.Errorf("%s: the cause is lost: %v", tt.name, err)
		}
	}
}
