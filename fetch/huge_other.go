//go:build unix && !linux

package fetch

func adviseHuge([]byte) {}
