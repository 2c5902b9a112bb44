//go:build !unix

package fetch

func allocBuffer(n int) []byte { return make([]byte, n) }
func freeBuffer([]byte)        {}
