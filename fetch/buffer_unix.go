//go:build unix

package fetch

import "syscall"

// allocBuffer maps n bytes of anonymous memory for a range read ahead: outside the Go heap, so
// that the budget is what the process holds (pages count once written), and freeBuffer gives it
// back to the system at once, whatever the garbage collector's pace.
func allocBuffer(n int) []byte {
	if n == 0 {
		return []byte{}
	}
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]byte, n)
	}
	if n%hugePage == 0 {
		adviseHuge(b)
	}
	return b
}

func freeBuffer(b []byte) {
	if cap(b) > 0 {
		if syscall.Munmap(b[:cap(b)]) != nil {
			return // a heap buffer (mmap had failed): the collector has it
		}
	}
}
