//go:build !unix

package nodetest

import "os/exec"

// ownProcessGroup does nothing where there are no Unix process groups.
func ownProcessGroup(*exec.Cmd) {}

// killProcessGroup kills the app itself where there are no Unix process
// groups; server.js starts no children of its own. An error means it is
// gone already, which is what was wanted.
func killProcessGroup(cmd *exec.Cmd) {
	_ = cmd.Process.Kill()
}
