//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// within runs fn, failing the test rather than hanging it if fn blocks, as
// opening a FIFO without a writer does.
func within[T any](t *testing.T, what string, fn func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- fn() }()
	select {
	case v := <-done:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("%s still blocked after 10s", what)
	}
	var zero T // not reached: Fatalf ends the test's goroutine
	return zero
}

func TestSecretRefusesSpecialFiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		make func(path string) error
		kind string
	}{
		{"FIFO", func(path string) error { return syscall.Mkfifo(path, 0o666) }, "a named pipe (FIFO)"},
		// A copy of /dev/null: the command used to replace it with a
		// world-readable regular file holding the secret.
		{"device", func(path string) error {
			return syscall.Mknod(path, syscall.S_IFCHR|0o666, int(unixDevice(1, 3)))
		}, "a device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, ".env")
			if err := tt.make(path); err != nil {
				t.Skipf("cannot make a %s here: %v", tt.name, err)
			}
			before, _ := os.Lstat(path)
			type result struct {
				stdout, stderr string
				code           int
			}
			r := within(t, "sessionctl secret --env-file "+tt.name, func() result {
				stdout, stderr, code := sessionctl(t, nil, "secret", "--env-file", path)
				return result{stdout, stderr, code}
			})
			if r.code != exitFailed || !strings.Contains(r.stderr, path+" is "+tt.kind+", not a regular file") {
				t.Errorf("exit %d, stderr %q; want 1 and %q", r.code, r.stderr, tt.kind)
			}
			if after, err := os.Lstat(path); err != nil || after.Mode() != before.Mode() {
				t.Errorf("%s became %v, %v", tt.kind, after.Mode(), err)
			}
			if names := dirNames(t, dir); len(names) != 1 {
				t.Errorf("files left beside it: %v", names)
			}
			assertNoSecrets(t, nil, r.stdout, r.stderr)
		})
	}
}

// Commands that only read the env file, such as check, must not hang on a
// FIFO either.
func TestLoadEnvironmentRefusesAFIFO(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "env")
	if err := syscall.Mkfifo(path, 0o666); err != nil {
		t.Skipf("cannot make a FIFO here: %v", err)
	}
	err := within(t, "loadEnvironment on a FIFO", func() error {
		_, err := loadEnvironment(func(string) (string, bool) { return "", false }, path)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("error %v, want one saying it is not a regular file", err)
	}
}

// Run as root (sudo sessionctl secret), the rewritten file keeps its owner,
// so the app's user can still read it.
func TestSecretKeepsTheOwner(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("only root can give a file away")
	}
	path := filepath.Join(t.TempDir(), ".env")
	os.WriteFile(path, []byte("NODE_ENV=production\n"), 0o600)
	const uid, gid = 65534, 65534
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := sessionctl(t, nil, "secret", "--env-file", path); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st := info.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid {
		t.Errorf("owner %d:%d, want %d:%d", st.Uid, st.Gid, uid, gid)
	}
}

// unixDevice is the device number of major:minor as Linux encodes small
// numbers; elsewhere it is some other device, which serves as well, since
// the node is never opened.
func unixDevice(major, minor uint64) uint64 {
	return major<<8 | minor
}
