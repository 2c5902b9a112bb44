//go:build !unix

package testenv

// lockFile does nothing where there is no flock: tests that share a port run in one package.
func lockFile(string) (func(), error) { return func() {}, nil }
