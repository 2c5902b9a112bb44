package palleto_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/palleto/palleto"
	"github.com/palleto/palleto/devstack"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/process"
)

// wordCount is a team's own processor: any type with Name and Process.
type wordCount struct{}

func (wordCount) Name() string { return "words" }
func (wordCount) Process(ctx context.Context, o process.Object, r io.Reader) (process.Fields, error) {
	data, err := io.ReadAll(r) // fine for an example; a real processor streams
	if err != nil {
		return nil, err
	}
	return process.Fields{"words": len(strings.Fields(string(data)))}, nil
}

// Embedding Palleto with a processor of your own. Against AWS, the clients come from
// palleto.AWSClients; here they point at the embedded development stack.
func Example_embed() {
	st, err := devstack.Start(devstack.DefaultConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	env := testenv.Env{S3Endpoint: st.S3Endpoint, SQSEndpoint: st.SQSEndpoint, AccessKey: "devstack", SecretKey: "devstack"}
	s3c, sqsc := env.S3(), env.SQS()
	key := "notes/hello.txt"
	s3c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &st.Bucket, Key: &key, Body: strings.NewReader("hello palleto world\n")})

	out, _ := os.MkdirTemp("", "palleto-example")
	defer os.RemoveAll(out)
	cfg := palleto.DefaultConfig()
	cfg.SQS.QueueURL = st.QueueURL
	cfg.SQS.WaitTime = time.Second
	cfg.OutDir = out
	cfg.Engine.ExitWhenIdle = time.Second
	d, err := palleto.New(cfg, palleto.Deps{SQS: sqsc, S3: s3c, Processor: wordCount{}, Logger: quietLogger()})
	if err != nil {
		log.Fatal(err)
	}
	summary, _ := d.Run(context.Background())
	result, _ := os.ReadFile(filepath.Join(out, "uploads", "notes", "hello.txt.json"))
	fmt.Println(summary.Objects, strings.Contains(string(result), `"words": 3`))
	// Output: 1 true
}
