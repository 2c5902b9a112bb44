package main

import (
	"bytes"
	"debug/elf"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/palleto/palleto"
	"github.com/palleto/palleto/backfill"
	"github.com/palleto/palleto/fetch"
	"github.com/palleto/palleto/sqs"
	"go.yaml.in/yaml/v3"
)

const repoRoot = "../.."

// iamActions maps every method of the SDK interfaces Palleto calls to the IAM actions it needs.
// A method added to sqs.API or fetch.API fails TestCloudFormationWiring until it is mapped here
// and granted in the template.
var iamActions = map[string][]string{
	"ReceiveMessage":               {"sqs:ReceiveMessage"},
	"DeleteMessageBatch":           {"sqs:DeleteMessage"},
	"ChangeMessageVisibilityBatch": {"sqs:ChangeMessageVisibility"},
	"GetQueueAttributes":           {"sqs:GetQueueAttributes"},
	"SendMessage":                  {"sqs:SendMessage"},
	"GetObject":                    {"s3:GetObject", "s3:GetObjectVersion"}, // by versionId when the event has one
	"HeadBucket":                   {"s3:ListBucket"},                       // the breaker's probe of a bucket
	// palleto backfill (backfill.ListAPI, backfill.SendAPI)
	"ListObjectsV2":    {"s3:ListBucket"},
	"SendMessageBatch": {"sqs:SendMessage"},
}

// statements returns a policy's statements, those under a condition (Fn::If [cond, statement,
// AWS::NoValue]) as the statement the condition adds, and checks no resource is a wildcard but
// the objects of a named bucket.
func statements(t *testing.T, policy any) []any {
	t.Helper()
	var out []any
	for _, s := range policy.([]any) {
		if c, ok := s.(map[string]any)["Fn::If"]; ok {
			s = dig(t, c, 1)
		}
		if dig(t, s, "Effect") != "Allow" {
			t.Errorf("statement %v is not Allow", s)
		}
		resources, ok := dig(t, s, "Resource").([]any)
		if !ok {
			resources = []any{dig(t, s, "Resource")}
		}
		for _, r := range resources {
			if r := str(r); strings.Contains(r, "*") && !strings.HasSuffix(r, "/*]") {
				t.Errorf("statement %v grants a wildcard resource", s)
			}
		}
		out = append(out, s)
	}
	return out
}

// actions is the sorted actions of statements.
func actions(t *testing.T, sts ...any) []string {
	var got []string
	for _, s := range sts {
		for _, a := range dig(t, s, "Action").([]any) {
			got = append(got, a.(string))
		}
	}
	slices.Sort(got)
	return slices.Compact(got)
}

// apiActions is the sorted IAM actions the methods of the interfaces need.
func apiActions(t *testing.T, apis ...reflect.Type) []string {
	var want []string
	for _, api := range apis {
		for i := range api.NumMethod() {
			acts, ok := iamActions[api.Method(i).Name]
			if !ok {
				t.Errorf("%s.%s has no IAM action in iamActions", api, api.Method(i).Name)
			}
			want = append(want, acts...)
		}
	}
	slices.Sort(want)
	return slices.Compact(want)
}

func readYAML(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, path))
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var d map[string]any
		if err := dec.Decode(&d); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, d)
	}
	return docs
}

// dig follows keys (string) and indexes (int) into parsed YAML.
func dig(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %v: not a mapping: %v", path, v)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("at %v: not a list of %d: %v", path, k+1, v)
			}
			v = l[k]
		}
	}
	return v
}

func str(v any) string { return fmt.Sprint(v) }

func TestCloudFormationWiring(t *testing.T) {
	doc := readYAML(t, "deploy/cloudformation/palleto.yaml")[0]
	res := func(path ...any) any { return dig(t, doc, append([]any{"Resources"}, path...)...) }
	queueArn := str(map[string]any{"Fn::GetAtt": []any{"Queue", "Arn"}})
	bucketArn := str(map[string]any{"Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}"})

	// Bucket -> queue.
	if got := res("Bucket", "Properties", "NotificationConfiguration", "QueueConfigurations", 0); str(dig(t, got, "Queue")) != queueArn || dig(t, got, "Event") != "s3:ObjectCreated:*" {
		t.Errorf("bucket notification: %v", got)
	}
	// A results store in the same bucket must not be notified of its own writes: the
	// notification takes a prefix filter (NotificationPrefix), on both bucket resources.
	for _, b := range []string{"Bucket", "BucketForExistingQueue"} {
		filter := str(res(b, "Properties", "NotificationConfiguration", "QueueConfigurations", 0, "Filter"))
		if !strings.Contains(filter, "HasNotificationPrefix") || !strings.Contains(filter, "Ref:NotificationPrefix") || !strings.Contains(filter, "Name:prefix") {
			t.Errorf("%s: notification filter %s, want a prefix rule from NotificationPrefix", b, filter)
		}
	}
	if res("Bucket", "DependsOn") != "QueuePolicy" {
		t.Error("the bucket must depend on the queue policy, or S3 cannot validate the notification")
	}
	if str(res("Bucket", "Properties", "BucketName")) != str(map[string]any{"Ref": "BucketName"}) {
		t.Error("the bucket's name must be the BucketName parameter the policies name")
	}
	// Only that bucket may send.
	st := res("QueuePolicy", "Properties", "PolicyDocument", "Statement", 0)
	if dig(t, st, "Effect") != "Allow" || str(dig(t, st, "Principal", "Service")) != "s3.amazonaws.com" ||
		dig(t, st, "Action") != "sqs:SendMessage" || str(dig(t, st, "Resource")) != queueArn ||
		str(dig(t, st, "Condition", "ArnEquals", "aws:SourceArn")) != bucketArn ||
		dig(t, st, "Condition", "StringEquals", "aws:SourceAccount") == nil {
		t.Errorf("queue policy statement: %v", st)
	}
	if str(res("QueuePolicy", "Properties", "Queues", 0)) != str(map[string]any{"Ref": "Queue"}) {
		t.Error("the queue policy is not on the queue")
	}
	// Redrive to the DLQ.
	if str(res("Queue", "Properties", "RedrivePolicy", "deadLetterTargetArn")) != str(map[string]any{"Fn::GetAtt": []any{"DeadLetterQueue", "Arn"}}) ||
		res("Queue", "Properties", "RedrivePolicy", "maxReceiveCount") == nil {
		t.Errorf("redrive policy: %v", res("Queue", "Properties", "RedrivePolicy"))
	}
	// SQS's redrive counts every delivery, outages included; Palleto's guard counts only the
	// object's failures. The redrive must not fire before Palleto's own guard, even after a few
	// outages: well above --max-receives.
	if n, _ := dig(t, doc, "Parameters", "MaxReceiveCount", "Default").(int); n < 10*palleto.DefaultConfig().MaxReceives {
		t.Errorf("MaxReceiveCount default %d: want at least 10 x --max-receives (%d)", n, palleto.DefaultConfig().MaxReceives)
	}
	// IAM: exactly what the code calls. palleto run, with a directory or a database store:
	var run, results []any
	for _, st := range statements(t, res("PalletoPolicy", "Properties", "PolicyDocument", "Statement")) {
		if strings.HasPrefix(str(dig(t, st, "Sid")), "Results") {
			results = append(results, st)
		} else {
			run = append(run, st)
		}
	}
	if got, want := actions(t, run...), apiActions(t, reflect.TypeFor[sqs.API](), reflect.TypeFor[fetch.API](), reflect.TypeFor[palleto.BucketAPI]()); !slices.Equal(got, want) {
		t.Errorf("IAM actions %v, want exactly %v", got, want)
	}
	// With ResultsBucketName (--out s3://...): write, read back, delete a failure record, and
	// list, on that bucket only, and only when it is set.
	resultsArn := str(map[string]any{"Fn::Sub": "arn:${AWS::Partition}:s3:::${ResultsBucketName}"})
	resultsObjects := str(map[string]any{"Fn::Sub": "arn:${AWS::Partition}:s3:::${ResultsBucketName}/*"})
	if got := actions(t, results...); !slices.Equal(got, []string{"s3:DeleteObject", "s3:GetObject", "s3:ListBucket", "s3:PutObject"}) {
		t.Errorf("the results bucket's actions %v, want s3:PutObject, s3:GetObject, s3:DeleteObject and s3:ListBucket", got)
	}
	for _, st := range results {
		if r := str(dig(t, st, "Resource")); r != resultsArn && r != resultsObjects {
			t.Errorf("results statement %v is not on the ResultsBucketName bucket", st)
		}
	}
	for _, st := range res("PalletoPolicy", "Properties", "PolicyDocument", "Statement").([]any) {
		if c, ok := st.(map[string]any)["Fn::If"]; ok && (dig(t, c, 0) != "HasResultsBucket" || str(dig(t, c, 2)) != str(map[string]any{"Ref": "AWS::NoValue"})) {
			t.Errorf("a conditional statement %v is not HasResultsBucket's", st)
		}
	}
	if str(dig(t, doc, "Conditions", "HasResultsBucket")) != str(map[string]any{"Fn::Not": []any{map[string]any{"Fn::Equals": []any{map[string]any{"Ref": "ResultsBucketName"}, ""}}}}) {
		t.Error("HasResultsBucket must be: ResultsBucketName is set")
	}
	// With Backfill=true, a policy for palleto backfill: what backfill.ListAPI and SendAPI call,
	// on the bucket and the queue, and reading the results bucket's results.
	if res("BackfillPolicy", "Condition") != "WantBackfill" || dig(t, doc, "Outputs", "BackfillPolicyArn", "Condition") != "WantBackfill" {
		t.Error("the backfill policy and its output must be created only with Backfill=true")
	}
	var bf, bfResults []any
	for _, st := range statements(t, res("BackfillPolicy", "Properties", "PolicyDocument", "Statement")) {
		if str(dig(t, st, "Sid")) == "ReadResults" {
			bfResults = append(bfResults, st)
		} else {
			bf = append(bf, st)
		}
	}
	if got, want := actions(t, bf...), apiActions(t, reflect.TypeFor[backfill.ListAPI](), reflect.TypeFor[backfill.SendAPI]()); !slices.Equal(got, want) {
		t.Errorf("backfill's IAM actions %v, want exactly %v", got, want)
	}
	for _, st := range bf {
		r := str(dig(t, st, "Resource"))
		if slices.Contains(actions(t, st), "s3:ListBucket") && r != str(map[string]any{"Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}"}) {
			t.Errorf("backfill lists %s, want the BucketName bucket", r)
		}
		if slices.Contains(actions(t, st), "sqs:SendMessage") && !strings.Contains(r, "Queue Arn") {
			t.Errorf("backfill sends to %s, want the queue", r)
		}
	}
	if got := actions(t, bfResults...); !slices.Equal(got, []string{"s3:GetObject", "s3:ListBucket"}) {
		t.Errorf("backfill's reading of the results: %v", got)
	}
}

func TestKubernetesManifests(t *testing.T) {
	kinds := map[string]map[string]any{}
	for _, d := range readYAML(t, "deploy/kubernetes/palleto.yaml") {
		kinds[str(d["kind"])] = d
	}
	for _, k := range []string{"ServiceAccount", "ConfigMap", "PersistentVolumeClaim", "Deployment", "TriggerAuthentication", "ScaledObject"} {
		if kinds[k] == nil {
			t.Fatalf("no %s in the manifests", k)
		}
	}
	// The ConfigMap's palleto.yaml is a valid run configuration.
	cfgFile := filepath.Join(t.TempDir(), "palleto.yaml")
	os.WriteFile(cfgFile, []byte(str(dig(t, kinds["ConfigMap"], "data", "palleto.yaml"))), 0o644)
	cfg := palleto.DefaultConfig()
	level, format := "info", ""
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	runFlags(fs, &cfg, &level, &format)
	metricsAddr := fs.String("metrics-addr", "", "")
	if err := parseFlags(fs, []string{"--config", cfgFile}); err != nil {
		t.Fatalf("the ConfigMap's config: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the ConfigMap's config: %v", err)
	}
	dep := kinds["Deployment"]
	pod := dig(t, dep, "spec", "template", "spec")
	c := dig(t, pod, "containers", 0)
	if args := str(dig(t, c, "args")); !strings.Contains(args, "--config /etc/palleto/palleto.yaml") {
		t.Errorf("container args %s do not read the mounted config", args)
	}
	mounts := map[string]string{}
	for _, m := range dig(t, c, "volumeMounts").([]any) {
		mounts[str(dig(t, m, "name"))] = str(dig(t, m, "mountPath"))
	}
	if mounts["config"] != "/etc/palleto" || mounts["results"] != cfg.OutDir {
		t.Errorf("mounts %v: want the config at /etc/palleto and results at %s", mounts, cfg.OutDir)
	}
	port := strings.TrimPrefix(*metricsAddr, ":")
	if str(dig(t, c, "ports", 0, "containerPort")) != port || dig(t, c, "readinessProbe", "httpGet", "path") != "/readyz" || dig(t, c, "livenessProbe", "httpGet", "path") != "/healthz" {
		t.Errorf("probes and port %v do not match metrics-addr %s", dig(t, c, "ports"), *metricsAddr)
	}
	if grace := dig(t, pod, "terminationGracePeriodSeconds").(int); time.Duration(grace)*time.Second <= cfg.Engine.ShutdownTimeout+cfg.Engine.HardStopTimeout {
		t.Errorf("terminationGracePeriodSeconds %d must exceed shutdown-timeout %s + hard-stop-timeout %s", grace, cfg.Engine.ShutdownTimeout, cfg.Engine.HardStopTimeout)
	}
	if str(dig(t, pod, "securityContext", "runAsUser")) != "65532" || dig(t, pod, "securityContext", "runAsNonRoot") != true {
		t.Error("the pod must run as the image's non-root user 65532")
	}
	so := kinds["ScaledObject"]
	trig := dig(t, so, "spec", "triggers", 0)
	if dig(t, so, "spec", "scaleTargetRef", "name") != dig(t, dep, "metadata", "name") ||
		dig(t, trig, "type") != "aws-sqs-queue" ||
		dig(t, trig, "metadata", "queueURL") != cfg.SQS.QueueURL ||
		dig(t, trig, "metadata", "queueLength") != fmt.Sprint(cfg.Engine.Workers) ||
		dig(t, trig, "authenticationRef", "name") != dig(t, kinds["TriggerAuthentication"], "metadata", "name") {
		t.Errorf("ScaledObject %v does not scale the Deployment on its queue, one replica per %d messages", so, cfg.Engine.Workers)
	}
	if dig(t, pod, "serviceAccountName") != dig(t, kinds["ServiceAccount"], "metadata", "name") {
		t.Error("the pod does not use the ServiceAccount")
	}
}

// TestDockerfileBuildStage runs the Dockerfile's build command without Docker and checks the
// binary is static and runs; and that the image runs as the non-root user.
func TestDockerfileBuildStage(t *testing.T) {
	t.Parallel() // long, and much of it waiting on other processes: it overlaps the other long tests
	data, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	build := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 go build .*)$`).FindSubmatch(data)
	if build == nil {
		t.Fatal("no `RUN CGO_ENABLED=0 go build` line in the Dockerfile")
	}
	bin := filepath.Join(t.TempDir(), "palleto")
	line := strings.ReplaceAll(string(build[1]), "${VERSION}", "test-1.2.3")
	line = strings.ReplaceAll(line, "/out/palleto", bin)
	cmd := exec.Command("sh", "-c", line)
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary is dynamically linked; the distroless static image cannot run it")
		}
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "palleto test-1.2.3 inflate=go" {
		t.Errorf("version: %q %v", out, err)
	}
	if !regexp.MustCompile(`(?m)^USER 65532:65532$`).Match(data) || !strings.Contains(string(data), ":nonroot") {
		t.Error("the final stage must run as the non-root user 65532")
	}
	// The ISA-L image: the same build with -tags isal and cgo, a binary that says so, non-root.
	isal, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile.isal"))
	if err != nil {
		t.Fatal(err)
	}
	ib := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=1 go build -tags isal .*)$`).FindSubmatch(isal)
	if ib == nil {
		t.Fatal("no `RUN CGO_ENABLED=1 go build -tags isal` line in Dockerfile.isal")
	}
	ibin := filepath.Join(t.TempDir(), "palleto-isal")
	iline := strings.ReplaceAll(strings.ReplaceAll(string(ib[1]), "${VERSION}", "test-1.2.3"), "/out/palleto", ibin)
	icmd := exec.Command("sh", "-c", iline)
	icmd.Dir = repoRoot
	if out, err := icmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", iline, err, out)
	}
	if out, err := exec.Command(ibin, "version").Output(); err != nil || strings.TrimSpace(string(out)) != "palleto test-1.2.3 inflate=isal" {
		t.Errorf("the ISA-L build's version: %q %v", out, err)
	}
	if !regexp.MustCompile(`(?m)^USER 65532:65532$`).Match(isal) || !strings.Contains(string(isal), "libisal.so.2") {
		t.Error("Dockerfile.isal must run as user 65532 and ship libisal.so.2")
	}
	// The library is copied from and to this architecture's directory, named by gcc, not a
	// hard-coded amd64 path: the build stage's copy, run here, lands it where the loader looks.
	if strings.Contains(string(isal), "x86_64") || !strings.Contains(string(isal), "COPY --from=build /out/root/ /") {
		t.Error("Dockerfile.isal hard-codes the amd64 library directory, or does not copy /out/root to /")
	}
	lib := regexp.MustCompile(`(?m)^RUN (mkdir -p /out/data/out .*libisal.*)$`).FindSubmatch(isal)
	if lib == nil {
		t.Fatal("no `RUN mkdir -p /out/data/out ... libisal.so.2` line in Dockerfile.isal")
	}
	root := t.TempDir()
	lline := strings.ReplaceAll(strings.ReplaceAll(string(lib[1]), "/out/palleto", ibin), "/out/", root+"/")
	if out, err := exec.Command("sh", "-c", lline).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", lline, err, out)
	}
	arch, err := exec.Command("gcc", "-print-multiarch").Output()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "root", "usr", "lib", strings.TrimSpace(string(arch)), "libisal.so.2")); err != nil {
		t.Errorf("the build stage does not put libisal.so.2 in this architecture's directory: %v", err)
	}
	// The compose file's env file exists and names the endpoints the devstack service serves.
	env, err := os.ReadFile(filepath.Join(repoRoot, "deploy/compose/devstack.env"))
	if err != nil || !strings.Contains(string(env), "AWS_ENDPOINT_URL_SQS=http://devstack:9324") {
		t.Errorf("deploy/compose/devstack.env: %v", err)
	}
}
