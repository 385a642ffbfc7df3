//go:build !unix

package pgtest

import (
	"os"
	"os/exec"
)

// clusterUser is who runs a throwaway cluster's programs: always this
// process's own user here. PostgreSQL's pg_ctl for Windows drops
// administrator rights by itself.
type clusterUser struct{}

func userFor(string) (clusterUser, error) { return clusterUser{}, nil }

func (clusterUser) apply(*exec.Cmd, string) {}

// processExited reports whether process pid is gone. On Windows,
// FindProcess opens the process and fails once it has exited; where it
// always succeeds, no orphan is ever taken for dead.
func processExited(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return true
	}
	p.Release()
	return false
}
