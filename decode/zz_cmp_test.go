package decode

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
)

func TestZZSpin(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 0))
	var b bytes.Buffer
	paths := []string{"/", "/api/v1/items", "/api/v1/items/42", "/static/app.js", "/login", "/healthz"}
	for i := 0; b.Len() < 64<<20; i++ {
		fmt.Fprintf(&b, `{"ts":%d,"ip":"10.%d.%d.%d","method":"GET","path":"%s","status":%d,"bytes":%d,"ms":%d}`+"\n",
			1469059200+i, r.IntN(256), r.IntN(256), r.IntN(256), paths[r.IntN(len(paths))], []int{200, 200, 200, 304, 404, 500}[r.IntN(6)], r.IntN(1e5), r.IntN(900))
	}
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	w.Write(b.Bytes())
	w.Close()
	buf := make([]byte, 256<<10)
	var on, off []float64
	for i := 0; i < 60; i++ {
		spin := i%2 == 1
		var cmd *exec.Cmd
		if spin {
			cmd = exec.Command("sh", "-c", "while :; do :; done")
			cmd.Start()
			time.Sleep(20 * time.Millisecond)
		}
		zr, _ := gzip.NewReader(bytes.NewReader(z.Bytes()))
		start := time.Now()
		var total int64
		for {
			n, err := zr.Read(buf)
			total += int64(n)
			bytes.Count(buf[:n], []byte{'\n'})
			if err == io.EOF {
				break
			}
		}
		mbs := float64(total) / 1e6 / time.Since(start).Seconds()
		if spin {
			cmd.Process.Kill()
			cmd.Wait()
			on = append(on, mbs)
		} else {
			off = append(off, mbs)
		}
	}
	fmt.Fprintln(os.Stderr, "off", off)
	fmt.Fprintln(os.Stderr, "on ", on)
	var so, sf float64
	for i := range on {
		so += on[i]
		sf += off[i]
	}
	fmt.Fprintf(os.Stderr, "mean off %.0f on %.0f ratio %.3f\n", sf/float64(len(off)), so/float64(len(on)), so/sf)
}
