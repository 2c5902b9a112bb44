package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/palleto/palleto/internal/testenv"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// dashboard is the part of Grafana's dashboard JSON model the test checks.
type dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasource     `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Time struct{ From, To string } `json:"time"`
}

type datasource struct{ Type, UID string }

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *datasource              `json:"datasource"`
	GridPos    struct{ X, Y, W, H int } `json:"gridPos"`
	Targets    []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

// grafanaVars are the variables the queries may use, replaced by values PromQL takes.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h", "$instance", "x")

// dashboardQueries checks deploy/grafana/palleto.json is a dashboard Grafana 10+ imports as it
// is (a Prometheus data-source variable every panel uses; panels on the 24-column grid, not
// overlapping; every query valid PromQL) and returns its PromQL queries.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "deploy/grafana/palleto.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("deploy/grafana/palleto.json is not JSON: %v", err)
	}
	if d.Title == "" || d.UID == "" || d.SchemaVersion < 36 || d.Time.From == "" {
		t.Errorf("title %q, uid %q, schemaVersion %d (Grafana 10 writes 37+), time %+v", d.Title, d.UID, d.SchemaVersion, d.Time)
	}
	var queries []string
	dsVar := false
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
			dsVar = dsVar || (v.Name == "datasource" && string(v.Query) == `"prometheus"`)
		case "query":
			var q struct{ Query string }
			if json.Unmarshal(v.Query, &q) != nil || q.Query == "" || v.Datasource == nil || v.Datasource.UID != "${datasource}" {
				t.Errorf("variable %s: query %s, datasource %+v", v.Name, v.Query, v.Datasource)
			}
			m := regexp.MustCompile(`^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*), *[a-zA-Z_]+\)$`).FindStringSubmatch(q.Query)
			if m == nil {
				t.Errorf("variable %s: %q is not label_values(METRIC, LABEL)", v.Name, q.Query)
				continue
			}
			queries = append(queries, m[1])
		}
	}
	if !dsVar {
		t.Error("no Prometheus data-source variable named datasource: the dashboard would not import as it is")
	}
	var all []panel
	for _, p := range d.Panels {
		all = append(all, p)
		all = append(all, p.Panels...)
	}
	ids := map[int]bool{}
	type rect struct{ x, y, w, h int }
	var placed []rect
	for _, p := range all {
		what := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if p.ID <= 0 || ids[p.ID] {
			t.Errorf("%s: id missing or not unique", what)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W < 1 || g.X < 0 || g.X+g.W > 24 || g.H < 1 || g.Y < 0 {
			t.Errorf("%s: gridPos %+v is off the 24-column grid", what, g)
		}
		r := rect{g.X, g.Y, g.W, g.H}
		for _, o := range placed {
			if r.x < o.x+o.w && o.x < r.x+r.w && r.y < o.y+o.h && o.y < r.y+r.h {
				t.Errorf("%s: gridPos %+v overlaps another panel %+v", what, g, o)
			}
		}
		placed = append(placed, r)
		if p.Type == "row" {
			continue
		}
		if !slices.Contains([]string{"timeseries", "stat", "state-timeline", "gauge", "bargauge", "table"}, p.Type) {
			t.Errorf("%s: type %q is not a Grafana 10 core panel", what, p.Type)
		}
		if p.Title == "" || p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("%s: a title, the ${datasource} variable and queries are needed (datasource %+v, %d queries)", what, p.Datasource, len(p.Targets))
		}
		refs := map[string]bool{}
		for _, q := range p.Targets {
			if q.RefID == "" || refs[q.RefID] || q.Expr == "" || q.Datasource == nil || q.Datasource.UID != "${datasource}" {
				t.Errorf("%s: query %q (refId %q, datasource %+v)", what, q.Expr, q.RefID, q.Datasource)
			}
			refs[q.RefID] = true
			queries = append(queries, q.Expr)
		}
	}
	if len(all) < 10 {
		t.Errorf("%d panels", len(all))
	}
	return queries
}

// ruleQueries parses deploy/prometheus/palleto-rules.yml as Prometheus does (rulefmt, unknown
// fields refused, expressions and templates checked) and returns its expressions.
func ruleQueries(t *testing.T) []string {
	t.Helper()
	groups, errs := rulefmt.ParseFile(filepath.Join(repoRoot, "deploy/prometheus/palleto-rules.yml"), false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.Default())
	for _, err := range errs {
		t.Errorf("palleto-rules.yml: %v", err)
	}
	if groups == nil {
		t.FailNow()
	}
	var exprs, alerts []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
			alerts = append(alerts, r.Alert)
			if r.Alert != "" && (r.Labels["severity"] == "" || r.Annotations["summary"] == "") {
				t.Errorf("alert %s: no severity label or summary", r.Alert)
			}
		}
	}
	for _, want := range []string{"PalletoOldestMessageTooOld", "PalletoDependencyDown", "PalletoObjectFailureRate", "PalletoNoProgress", "PalletoDeadLetters"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s (have %v)", want, alerts)
		}
	}
	return exprs
}

// metricNames returns the metric names a PromQL query (or a bare name) selects.
func metricNames(t *testing.T, query string) []string {
	t.Helper()
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVars.Replace(query))
	if err != nil {
		t.Errorf("not PromQL: %q: %v", query, err)
		return nil
	}
	var names []string
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			for _, m := range vs.LabelMatchers {
				if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
					names = append(names, m.Value)
				}
			}
		}
		return nil
	})
	if len(names) == 0 {
		t.Errorf("%q selects no metric by name", query)
	}
	return names
}

func TestDashboardAndRulesAreValid(t *testing.T) {
	for _, q := range append(dashboardQueries(t), ruleQueries(t)...) {
		metricNames(t, q)
	}
}

// TestDashboardAndRulesUseExportedMetricsMinIO: every metric a dashboard panel or an alert
// rule names is one a running daemon exports, so a renamed metric cannot leave a dead panel or
// an alert that never fires. The daemon runs on the real servers and handles a few objects.
func TestDashboardAndRulesUseExportedMetricsMinIO(t *testing.T) {
	env := testenv.Get(t)
	bucket := testenv.Name("dash")
	queueURL := env.NotifiedBucket(t, bucket)
	r := rand.New(rand.NewPCG(5, 6))
	const n = 3
	for i := range n {
		gz, _ := gzipLines(r, 200, 1)
		putObject(t, env.S3(), bucket, fmt.Sprintf("d/%d.gz", i), gz)
	}
	testenv.WaitForMessages(t, env.SQS(), queueURL, n, time.Minute)
	addr := freeAddr(t)
	cmd, stderr := startPalleto(t, env.AWSEnv(), "run", "--queue-url", queueURL, "--out", t.TempDir(), "--wait-time", "1s", "--metrics-addr", addr)
	var exported map[string]bool
	deadline := time.Now().Add(time.Minute)
	for {
		exported = exportedNames(t, addr)
		if exported["palleto_queue_messages"] && scrape(t, addr)["palleto_sqs_messages_deleted_total"] >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not handle %d objects in a minute:\n%s", n, tail(stderr.String(), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	used := map[string][]string{}
	for what, queries := range map[string][]string{"deploy/grafana/palleto.json": dashboardQueries(t), "deploy/prometheus/palleto-rules.yml": ruleQueries(t)} {
		for _, q := range queries {
			for _, name := range metricNames(t, q) {
				used[name] = append(used[name], what)
			}
		}
	}
	var names []string
	for name := range used {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !exported[name] {
			t.Errorf("%s names %s, which palleto does not export", strings.Join(slices.Compact(used[name]), " and "), name)
		}
	}
	t.Logf("%d metric names used by the dashboard and the rules", len(names))
}

// exportedNames returns the series names of /metrics: a histogram's _bucket, _sum and _count.
func exportedNames(t *testing.T, addr string) map[string]bool {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	tp := expfmt.NewTextParser(model.UTF8Validation)
	families, err := tp.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	out := map[string]bool{}
	for name, f := range families {
		if len(f.Metric) == 0 {
			continue
		}
		switch {
		case f.Metric[0].Histogram != nil:
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = true, true, true
		case f.Metric[0].Summary != nil:
			out[name], out[name+"_sum"], out[name+"_count"] = true, true, true
		default:
			out[name] = true
		}
	}
	return out
}

// TestKubernetesScraping: the pods say where their metrics are (prometheus.io annotations), and
// a Prometheus operator's ServiceMonitor finds them through a Service on the container's port.
func TestKubernetesScraping(t *testing.T) {
	kinds := map[string]map[string]any{}
	for _, d := range readYAML(t, "deploy/kubernetes/palleto.yaml") {
		kinds[str(d["kind"])] = d
	}
	dep, svc, sm := kinds["Deployment"], kinds["Service"], kinds["ServiceMonitor"]
	if svc == nil || sm == nil {
		t.Fatal("no Service or ServiceMonitor in the manifests")
	}
	c := dig(t, dep, "spec", "template", "spec", "containers", 0)
	portName, port := str(dig(t, c, "ports", 0, "name")), str(dig(t, c, "ports", 0, "containerPort"))
	ann := dig(t, dep, "spec", "template", "metadata", "annotations").(map[string]any)
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != port || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("pod annotations %v: want prometheus.io/scrape true, port %s, path /metrics", ann, port)
	}
	podLabels := dig(t, dep, "spec", "template", "metadata", "labels").(map[string]any)
	for k, v := range dig(t, svc, "spec", "selector").(map[string]any) {
		if podLabels[k] != v {
			t.Errorf("the Service selects %s=%v, which the pods do not carry (%v)", k, v, podLabels)
		}
	}
	if dig(t, svc, "spec", "ports", 0, "targetPort") != portName || dig(t, svc, "spec", "ports", 0, "name") != portName {
		t.Errorf("the Service's port %v is not the container's %s", dig(t, svc, "spec", "ports", 0), portName)
	}
	if dig(t, sm, "apiVersion") != "monitoring.coreos.com/v1" || dig(t, sm, "spec", "endpoints", 0, "port") != portName || dig(t, sm, "spec", "endpoints", 0, "path") != "/metrics" {
		t.Errorf("ServiceMonitor %v", sm)
	}
	svcLabels := dig(t, svc, "metadata", "labels").(map[string]any)
	for k, v := range dig(t, sm, "spec", "selector", "matchLabels").(map[string]any) {
		if svcLabels[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%v, which the Service does not carry (%v)", k, v, svcLabels)
		}
	}
}
