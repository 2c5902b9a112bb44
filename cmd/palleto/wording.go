package main

import (
	"fmt"
	"time"
)

// size says n bytes as a person reads it, by magnitude: 512 B, 12.3 kB, 4.5 MB, 1.2 GB, 3.4 TB
// (decimal units, as the rates in MB/s).
func size(n int64) string {
	f := float64(n)
	switch {
	case n < 1000:
		return fmt.Sprintf("%d B", n)
	case f < 1e6:
		return fmt.Sprintf("%.1f kB", f/1e3)
	case f < 1e9:
		return fmt.Sprintf("%.1f MB", f/1e6)
	case f < 1e12:
		return fmt.Sprintf("%.1f GB", f/1e9)
	}
	return fmt.Sprintf("%.1f TB", f/1e12)
}

// rate says n bytes over d as a size per second; "" when d is not positive.
func rate(n int64, d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return size(int64(float64(n)/d.Seconds())) + "/s"
}

// count says n things: "1 object", "3 objects" (the plural is the singular with an s).
func count(n int64, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
