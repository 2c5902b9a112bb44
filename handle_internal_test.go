package palleto

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestCountingReaderStopsAtTheLimitAndStaysStopped(t *testing.T) {
	c := &countingReader{r: strings.NewReader(strings.Repeat("x", 100)), limit: 10, what: "test"}
	_, err := io.ReadAll(c)
	if !errors.Is(err, ErrTooLarge) || c.n != 11 {
		t.Fatalf("err %v after %d bytes; want ErrTooLarge after 11", err, c.n)
	}
	// A caller that reads again (bufio, a careless processor) keeps getting the error.
	n, err := c.Read(make([]byte, 64))
	if n != 0 || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("second read: %d, %v", n, err)
	}
}
