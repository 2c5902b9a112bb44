package kafka

// SetMaxPending sets maxPending for a test and returns what puts it back.
func SetMaxPending(n int) func() {
	old := maxPending
	maxPending = n
	return func() { maxPending = old }
}
