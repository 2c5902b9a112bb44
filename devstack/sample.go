package devstack

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/klauspost/compress/gzip"
)

var (
	sampleStart = time.Date(2016, 7, 21, 0, 0, 0, 0, time.UTC)
	paths       = []string{"/", "/index.html", "/api/v1/items", "/api/v1/items/42", "/login", "/static/app.js", "/static/app.css", "/search?q=packrat"}
	agents      = []string{"Mozilla/5.0 (X11; Linux x86_64)", "curl/7.50.1", "Go-http-client/1.1", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_5)"}
	statuses    = []int{200, 200, 200, 200, 200, 304, 404, 500}
)

// SampleObject returns the i-th demo object, the same every time: a key named for a day
// (packrat/data/20160721.gz, then the next days) and a gzip file of access-log lines; every
// fourth file is multi-member, as `cat a.gz b.gz` makes. It also returns the uncompressed size
// and line count, for checking.
func SampleObject(i int) (key string, gz []byte, plainBytes, lines int) {
	r := rand.New(rand.NewPCG(uint64(i), 20160721))
	day := sampleStart.AddDate(0, 0, i)
	key = fmt.Sprintf("packrat/data/%s.gz", day.Format("20060102"))
	lines = 500 + r.IntN(2500)
	var plain bytes.Buffer
	for l := 0; l < lines; l++ {
		t := day.Add(time.Duration(l) * 86400 * time.Second / time.Duration(lines))
		fmt.Fprintf(&plain, "10.0.%d.%d - - [%s] \"GET %s HTTP/1.1\" %d %d \"-\" \"%s\"\n",
			r.IntN(256), r.IntN(256), t.Format("02/Jan/2006:15:04:05 -0700"), paths[r.IntN(len(paths))],
			statuses[r.IntN(len(statuses))], 200+r.IntN(50000), agents[r.IntN(len(agents))])
	}
	members := 1
	if i%4 == 3 {
		members = 2
	}
	data := plain.Bytes()
	var out bytes.Buffer
	for m := 0; m < members; m++ {
		w := gzip.NewWriter(&out)
		w.Write(data[m*len(data)/members : (m+1)*len(data)/members])
		w.Close()
	}
	return key, out.Bytes(), len(data), lines
}
