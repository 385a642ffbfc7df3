package redistest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

// TestSharedCluster starts the shared cluster and writes to every node
// through a cluster client.
func TestSharedCluster(t *testing.T) {
	t.Parallel()
	c := SharedCluster(t)
	client := Client(t, c.URL())
	prefix := Prefix(t, client)
	ctx := context.Background()
	seen := map[int]bool{}
	for i := 0; len(seen) < len(c.Nodes) && i < 1000; i++ {
		key := prefix + "{" + randomHex(4) + "}"
		if err := client.Set(ctx, key, "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
		seen[c.NodeOf(t, key)] = true
	}
	if len(seen) != len(c.Nodes) {
		t.Errorf("keys landed on %d nodes of %d", len(seen), len(c.Nodes))
	}
}

// child runs TestSharedCluster in a copy of this test binary with no
// redis-server to be found (an empty PATH, no TEST_REDIS_URL) and env, and
// returns its output and exit status.
func child(t *testing.T, env ...string) (string, int) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("redis-server does not run on Windows")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSharedCluster$", "-test.count=1", "-test.v")
	for _, kv := range os.Environ() {
		switch key, _, _ := strings.Cut(kv, "="); key {
		case "PATH", "TEST_REDIS_URL", "SESSION_ALLOW_NO_REDIS":
		default:
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "PATH="+t.TempDir())
	cmd.Env = append(cmd.Env, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("run the test binary: %v", err)
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

// TestMainWithoutRedis checks that a package whose tests skip for want of
// Redis fails, unless SESSION_ALLOW_NO_REDIS=1: "go test ./..." shows
// nothing but "ok" for a package that passes, so a skip that passes goes
// unseen.
func TestMainWithoutRedis(t *testing.T) {
	t.Parallel()
	out, code := child(t)
	if code != 1 || !strings.Contains(out, "--- SKIP: TestSharedCluster") || !strings.Contains(out, "1 test skipped for want of Redis") || !strings.Contains(out, "SESSION_ALLOW_NO_REDIS=1") {
		t.Errorf("exit status %d, want 1 with the skip, its count and the way out:\n%s", code, out)
	}
	out, code = child(t, "SESSION_ALLOW_NO_REDIS=1")
	if code != 0 || !strings.Contains(out, "1 test skipped for want of Redis") {
		t.Errorf("with SESSION_ALLOW_NO_REDIS=1: exit status %d, want 0 with the count:\n%s", code, out)
	}
}
