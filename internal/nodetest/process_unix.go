//go:build unix

package nodetest

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup puts the app in a process group of its own, so that
// killProcessGroup also ends any child it started.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killProcessGroup kills the app's whole process group. An error means the
// group is gone already, which is what was wanted.
func killProcessGroup(cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}
