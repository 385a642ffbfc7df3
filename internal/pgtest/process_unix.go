//go:build unix

package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
)

// clusterUser is who runs a throwaway cluster's programs. The zero value is
// this process's own user.
type clusterUser struct {
	cred *syscall.Credential
}

// userFor returns who must run a cluster kept in dir, and gives them dir.
// PostgreSQL refuses to run as root, so as root the cluster is run as the
// "postgres" user if there is one, else as "nobody".
func userFor(dir string) (clusterUser, error) {
	if os.Geteuid() != 0 {
		return clusterUser{}, nil
	}
	cred, err := unprivileged()
	if err == nil {
		err = os.Chown(dir, int(cred.Uid), int(cred.Gid))
	}
	if err != nil {
		return clusterUser{}, fmt.Errorf("running as root and %w", err)
	}
	return clusterUser{cred: cred}, nil
}

// apply makes cmd run as u, with home as HOME, since the invoking user's
// home is not the other user's to write.
func (u clusterUser) apply(cmd *exec.Cmd, home string) {
	if u.cred == nil {
		return
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.cred}
	cmd.Env = append(os.Environ(), "HOME="+home)
}

func unprivileged() (*syscall.Credential, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
	}
	return nil, fmt.Errorf("there is no \"postgres\" or \"nobody\" user to run PostgreSQL as")
}

// processExited reports whether process pid is gone: signal 0 checks
// without sending anything.
func processExited(pid int) bool {
	return syscall.Kill(pid, 0) == syscall.ESRCH
}
