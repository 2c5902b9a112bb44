package sqs

// Abandon drops s as a killed process does: its heartbeat stops with no visibility change, no
// delete and no flush; what s held comes back after its visibility timeout.
func Abandon(s *Source) { s.stop() }
