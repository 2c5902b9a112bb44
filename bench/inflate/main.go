// Command inflate measures the in-memory limit of this build's gzip inflater (the Go one, or
// ISA-L with `-tags isal`) on files: each is read into memory, then decompressed through
// decode.NewReader with 256 KiB reads and its newlines counted with bytes.Count. It prints the
// MB/s of decompressed bytes. The bench builds it both ways, for P1's side-by-side rows.
package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/palleto/palleto/decode"
)

func main() {
	var data [][]byte
	for _, f := range os.Args[1:] {
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		data = append(data, b)
	}
	buf := make([]byte, 256<<10)
	var total, lines int64
	start := time.Now()
	for _, d := range data {
		r, err := decode.NewReader(bytes.NewReader(d))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for {
			n, err := r.Read(buf)
			total += int64(n)
			lines += int64(bytes.Count(buf[:n], []byte{'\n'}))
			if err == io.EOF {
				break
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		r.Close()
	}
	fmt.Printf("%.1f %d %s\n", float64(total)/1e6/time.Since(start).Seconds(), lines, decode.Inflater)
}
