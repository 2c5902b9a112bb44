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
	_, err := New("nope", Options{})
	if err == nil || !strings.Contains(err.Error(), "lines") {
		t.Fatalf("err = %v", err)
	}
	p, err := New("lines", Options{})
	if err != nil || p.Name() != "lines" {
		t.Fatalf("New(lines) = %v, %v", p, err)
	}
}

func TestGrepAndSHA256(t *testing.T) {
	in := "GET /a 200\nPOST /b 500\nGET /c 500\n" + strings.Repeat("x", 300<<10) + " 500\nlast 200"
	g, err := New("grep", Options{Grep: ` 500$`})
	if err != nil {
		t.Fatal(err)
	}
	f, err := g.Process(context.Background(), Object{}, strings.NewReader(in))
	if err != nil || f["matches"] != int64(3) || f["lines"] != int64(5) {
		t.Fatalf("grep: %v %v", f, err)
	}
	if _, err := New("grep", Options{Grep: "("}); err == nil {
		t.Fatal("a bad pattern was accepted")
	}
	h, _ := New("sha256", Options{})
	f, err = h.Process(context.Background(), Object{}, strings.NewReader("abc"))
	if err != nil || f["sha256"] != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" || f["lines"] != int64(1) {
		t.Fatalf("sha256: %v %v", f, err)
	}
}
