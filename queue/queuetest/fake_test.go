package queuetest

import "testing"

func TestFakeConforms(t *testing.T) {
	for _, dlq := range []bool{false, true} {
		Run(t, func(t *testing.T) Env {
			f := &Fake{DLQ: dlq}
			return Env{Source: f, Send: func(b string) { f.Send(b) }, DLQ: dlq}
		})
	}
}
