package pgtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// childEnv marks a run of this test binary by TestMainWithoutPostgres, with
// no PostgreSQL to be found.
const childEnv = "PGTEST_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "no-postgres" {
		serverToolDirs = nil // the PATH is empty too
	}
	Main(m)
}

// TestPool needs PostgreSQL; the children of the tests below run it alone.
func TestPool(t *testing.T) {
	t.Parallel()
	table := Schema(t)
	var n int
	if err := Pool(t).QueryRow(context.Background(), "SELECT count(*) FROM pg_namespace WHERE nspname = $1", strings.Split(table, ".")[0]).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the test's schema: %d, %v", n, err)
	}
}

// child runs TestPool in a copy of this test binary with the PostgreSQL
// variables replaced by env and the PATH by an empty directory, and returns
// its output and exit status.
func child(t *testing.T, mode string, env ...string) (string, int) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the throwaway cluster is not supported on Windows")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPool$", "-test.count=1", "-test.v")
	for _, kv := range os.Environ() {
		switch key, _, _ := strings.Cut(kv, "="); key {
		case "PATH", "TEST_DATABASE_URL", "SESSION_ALLOW_NO_POSTGRES", childEnv:
		default:
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "PATH="+t.TempDir(), childEnv+"="+mode)
	cmd.Env = append(cmd.Env, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("run the test binary: %v", err)
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

// TestMainWithoutPostgres checks that a package whose tests skip for want of
// PostgreSQL fails: "go test ./..." shows nothing but "ok" for a package
// that passes, so a skip that passes goes unseen.
func TestMainWithoutPostgres(t *testing.T) {
	t.Parallel()
	t.Run("fails by default", func(t *testing.T) {
		t.Parallel()
		out, code := child(t, "no-postgres")
		if code != 1 || !strings.Contains(out, "--- SKIP: TestPool") || !strings.Contains(out, "1 test skipped for want of PostgreSQL") || !strings.Contains(out, "SESSION_ALLOW_NO_POSTGRES=1") {
			t.Errorf("exit status %d, want 1 with the skip, its count and the way out:\n%s", code, out)
		}
	})
	t.Run("passes with SESSION_ALLOW_NO_POSTGRES=1", func(t *testing.T) {
		t.Parallel()
		out, code := child(t, "no-postgres", "SESSION_ALLOW_NO_POSTGRES=1")
		if code != 0 || !strings.Contains(out, "1 test skipped for want of PostgreSQL") {
			t.Errorf("exit status %d, want 0 with the count:\n%s", code, out)
		}
	})
}

// TestServerOffThePath runs TestPool with an empty PATH, as on Debian,
// where initdb and pg_ctl live in /usr/lib/postgresql/VERSION/bin.
func TestServerOffThePath(t *testing.T) {
	t.Parallel()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	more, _ := filepath.Glob("/usr/local/pgsql/bin/initdb")
	if len(slices.Concat(dirs, more)) == 0 {
		t.Skip("no PostgreSQL installed off the PATH here")
	}
	out, code := child(t, "")
	if code != 0 || !strings.Contains(out, "--- PASS: TestPool") {
		t.Errorf("exit status %d, want 0 with TestPool run against a throwaway cluster:\n%s", code, out)
	}
}

func TestServerTools(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the stand-in programs are found by their execute bit")
	}
	root := t.TempDir()
	// programs makes dir under root with stand-ins for the named programs.
	programs := func(dir string, names ...string) string {
		dir = filepath.Join(root, dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	onPath := programs("bin", "initdb", "pg_ctl")
	halfOnPath := programs("half", "initdb")
	for _, version := range []string{"9.6", "10", "15"} {
		programs("usr/lib/postgresql/"+version+"/bin", "initdb", "pg_ctl")
	}
	programs("usr/lib/postgresql/16/bin", "initdb") // a version half removed
	local := programs("usr/local/pgsql/bin", "initdb", "pg_ctl")
	debian := filepath.Join(root, "usr/lib/postgresql/*/bin")
	newest := filepath.Join(root, "usr/lib/postgresql/15/bin")

	saved := serverToolDirs
	t.Cleanup(func() { serverToolDirs = saved })
	tests := []struct {
		name, path string
		dirs       []string
		want       string // the directory both come from; "" for an error
	}{
		{"the PATH first", onPath, []string{debian, local}, onPath},
		{"the newest complete version off the PATH", t.TempDir(), []string{debian, local}, newest},
		{"pg_ctl missing from the PATH", halfOnPath, []string{debian, local}, newest},
		{"a build from source", t.TempDir(), []string{filepath.Join(root, "nowhere/*/bin"), local}, local},
		{"none", t.TempDir(), []string{filepath.Join(root, "nowhere/*/bin")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PATH", tt.path)
			serverToolDirs = tt.dirs
			initdb, pgCtl, err := serverTools()
			if tt.want == "" {
				if err == nil || !strings.Contains(err.Error(), "none of: the PATH, "+tt.dirs[0]) {
					t.Errorf("error %v, want one naming every place looked in", err)
				}
				return
			}
			if err != nil || initdb != filepath.Join(tt.want, "initdb") || pgCtl != filepath.Join(tt.want, "pg_ctl") {
				t.Errorf("got %s, %s, %v; want both from %s", initdb, pgCtl, err, tt.want)
			}
		})
	}
}

func TestNewestFirst(t *testing.T) {
	t.Parallel()
	dirs := []string{"/p/9.5/bin", "/p/15/bin", "/p/9.6/bin", "/p/10/bin", "/p/16/bin", "/p/010/bin"}
	slices.SortStableFunc(dirs, newestFirst)
	want := []string{"/p/16/bin", "/p/15/bin", "/p/10/bin", "/p/010/bin", "/p/9.6/bin", "/p/9.5/bin"}
	if !slices.Equal(dirs, want) {
		t.Errorf("sorted %v, want %v", dirs, want)
	}
}
