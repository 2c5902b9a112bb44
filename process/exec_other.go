//go:build !unix

package process

import "os/exec"

var shell = []string{"/bin/sh", "-c"}

func ownGroup(*exec.Cmd, func()) {}
func killGroup(int) error        { return nil }
func groupAlive(int) bool        { return false }
func pinThread() func()          { return func() {} }

func started(int) {}
func exited(int)  {}

// KillAll does nothing where programs do not run in process groups of their own.
func KillAll() int { return 0 }
