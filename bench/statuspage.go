package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/palleto/palleto"
	"github.com/palleto/palleto/metrics"
)

// openPage serves d's status page (with the metrics beside it) on a free port and keeps it open
// as a person does: in headless Chromium when one is installed (PALLETO_TEST_CHROMIUM, as
// scripts/testservers.sh writes it), the page refreshing itself every 2 s; else by asking for
// / once and /status.json every 2 s, as the page's script does. Call it before d runs. It
// returns how the page is open, and the function that closes it.
func (b *bench) openPage(ctx context.Context, d *palleto.Daemon, met *metrics.Metrics) (how string, closePage func()) {
	stopTracker := d.StatusPage("bench").Start(ctx)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.tb.Fatalf("status page: %v", err)
	}
	// The run starts once the page has refreshed itself twice: a browser's start (its
	// processes, the first layout) is not what an open page costs.
	h, refreshes, settled := met.Handler(d.Ready), 0, make(chan struct{})
	var mu sync.Mutex
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/status.json" {
			mu.Lock()
			if refreshes++; refreshes == 2 {
				close(settled)
			}
			mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: counted, ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); srv.Serve(ln) }()
	url := "http://" + ln.Addr().String() + "/"
	pageCtx, cancel := context.WithCancel(ctx)
	how = "asked for every 2 s over HTTP, as the page's script does (no Chromium)"
	if path := os.Getenv("PALLETO_TEST_CHROMIUM"); path != "" {
		opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
			chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true), chromedp.UserDataDir(b.tempDir("", "palleto-bench-chromium")))
		alloc, cancelAlloc := chromedp.NewExecAllocator(pageCtx, opts...)
		tab, cancelTab := chromedp.NewContext(alloc)
		if err := chromedp.Do(tab, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("#counts"))); err != nil {
			b.tb.Fatalf("status page in %s: %v", path, err)
		}
		how = "open in headless Chromium, refreshing itself every 2 s"
		wg.Add(1)
		go func() { defer wg.Done(); <-pageCtx.Done(); cancelTab(); cancelAlloc() }()
	} else {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fetch := func(u string) {
				if resp, err := http.Get(u); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
			fetch(url)
			tick := time.NewTicker(2 * time.Second)
			defer tick.Stop()
			for {
				fetch(url + "status.json")
				select {
				case <-pageCtx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	select {
	case <-settled:
	case <-time.After(time.Minute):
		b.tb.Fatalf("status page: not refreshed twice in a minute (%s)", how)
	}
	return how, func() {
		cancel()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.o.Log.Warn("status page server", "error", err)
		}
		wg.Wait()
		stopTracker()
	}
}
