package decode

import (
	"bufio"
	"io"
)

// skipZeros skips the zero bytes after a gzip member (padding that tape and block writers leave,
// which GNU gzip and Python accept). It reports whether anything else follows: another member,
// or garbage that the caller's next header read refuses.
func skipZeros(br *bufio.Reader) (more bool, err error) {
	for {
		if _, err := br.Peek(1); err != nil {
			if err == io.EOF {
				return false, nil
			}
			return false, err
		}
		buf, _ := br.Peek(br.Buffered())
		i := 0
		for i < len(buf) && buf[i] == 0 {
			i++
		}
		br.Discard(i)
		if i < len(buf) {
			return true, nil
		}
	}
}
