package process

import (
	"context"
	"strings"
	"testing"
	"testing/iotest"
)

func TestCountLines(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
	}{
		{"", 0},
		{"\n", 1},
		{"a", 1},
		{"a\n", 1},
		{"a\nb", 2},
		{"a\nb\n", 2},
		{"\n\n\n", 3},
		{strings.Repeat("x\n", 300000), 300000}, // spans several buffers
		{strings.Repeat("x\n", 300000) + "tail", 300001},
	} {
		got, err := CountLines(context.Background(), iotest.HalfReader(strings.NewReader(tt.in)))
		if err != nil || got != tt.want {
			t.Errorf("CountLines(%.20q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestNewUnknownProcessorNamesTheChoices(t *testing.T) {
	_, err := New("nope")
	if err == nil || !strings.Contains(err.Error(), "lines") {
		t.Fatalf("err = %v", err)
	}
	p, err := New("lines")
	if err != nil || p.Name() != "lines" {
		t.Fatalf("New(lines) = %v, %v", p, err)
	}
}
