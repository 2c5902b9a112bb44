package status

import (
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"time"
)

//go:embed page
var page embed.FS

var pageTemplate = template.Must(template.New("index.html").Funcs(template.FuncMap{
	"bytes":    HumanBytes,
	"clock":    func(t time.Time) string { return t.Local().Format("15:04:05") },
	"ago":      func(t time.Time) string { return HumanDuration(time.Since(t)) },
	"duration": func(secs float64) string { return HumanDuration(time.Duration(secs * float64(time.Second))) },
	"pct": func(o Object) int {
		if o.Size <= 0 {
			return 0
		}
		return int(min(100*o.BytesRead/o.Size, 100))
	},
	"own":  func(class string) bool { return class != "unavailable" },
	"mbps": func(b float64) string { return fmt.Sprintf("%.1f", b/1e6) },
	"deref": func(p any) string {
		switch v := p.(type) {
		case *int64:
			if v != nil {
				return fmt.Sprint(*v)
			}
		case *float64:
			if v != nil {
				return HumanDuration(time.Duration(*v * float64(time.Second)))
			}
		}
		return "?"
	},
}).ParseFS(page, "page/index.html"))

// Handler serves the page at / (and its script and style), and the status at /status.json.
// Other paths are 404. It is read-only: any method but GET and HEAD is refused.
func (t *Tracker) Handler() http.Handler { return t }

// ServeHTTP implements http.Handler (see Handler).
func (t *Tracker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the status page is read-only", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	switch r.URL.Path {
	case "/status.json":
		h.Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(t.Snapshot())
	case "/":
		// Everything the page loads comes from here: no CDN, nothing inline.
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("Content-Type", "text/html; charset=utf-8")
		if err := pageTemplate.Execute(w, t.Snapshot()); err != nil {
			http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
		}
	case "/status.js", "/status.css":
		http.ServeFileFS(w, r, page, "page"+r.URL.Path)
	default:
		http.NotFound(w, r)
	}
}

// HumanBytes says n bytes in B, kB, MB, GB (powers of 1000).
func HumanBytes(n int64) string {
	f := float64(n)
	for _, u := range []string{"B", "kB", "MB", "GB", "TB"} {
		if f < 1000 || u == "TB" {
			if u == "B" {
				return fmt.Sprintf("%d B", n)
			}
			return fmt.Sprintf("%.1f %s", f, u)
		}
		f /= 1000
	}
	return ""
}

// HumanDuration says d to the second, in the largest two units: 45s, 3m12s, 2h05m, 3d04h.
func HumanDuration(d time.Duration) string {
	s := int64(max(d, 0).Round(time.Second) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
}
