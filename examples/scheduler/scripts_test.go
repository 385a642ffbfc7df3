package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/smartscheduler/session/internal/pgtest"
)

// The seed's two scripts, run with bash exactly as operators run them.

// sessionctlDir returns a directory holding a freshly built sessionctl.
func sessionctlDir(t *testing.T) string {
	t.Helper()
	requireTools(t)
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "sessionctl"), "github.com/smartscheduler/session/cmd/sessionctl")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build sessionctl: %v\n%s", err, out)
	}
	return dir
}

func requireTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"bash", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not on the PATH", tool)
		}
	}
}

// script runs one of the scripts in dir with bash, with PATH and env as its
// only session-related environment, and returns its output and exit status.
func script(t *testing.T, dir, path, name string, env map[string]string, args ...string) (string, int) {
	t.Helper()
	self, err := filepath.Abs(name)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", append([]string{self}, args...)...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		key, _, _ := strings.Cut(kv, "=")
		switch {
		case key == "PATH", key == "NODE_ENV", key == "APP_ENV", key == "USE_POSTGRES", key == "DATABASE_URL", strings.HasPrefix(key, "SESSION_"):
			continue // the test decides these
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, "PATH="+path)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	code := 0
	if exitErr, ok := err.(*exec.ExitError); ok {
		code = exitErr.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s: %v", name, err)
	}
	return out.String(), code
}

// systemPath is the PATH of this test without any sessionctl, plus Go.
func systemPath(t *testing.T) string {
	goBinary, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on the PATH")
	}
	return filepath.Dir(goBinary) + string(os.PathListSeparator) + "/usr/bin" + string(os.PathListSeparator) + "/bin"
}

func readEnv(t *testing.T, dir string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, ".env"))
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]string{}
	for line := range strings.Lines(string(data)) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			values[k] = v
		}
	}
	return values
}

func TestSetupProductionEnvScript(t *testing.T) {
	t.Parallel()
	path := sessionctlDir(t) + string(os.PathListSeparator) + systemPath(t)
	dir := t.TempDir()
	// An operator's existing file: its lines must survive.
	os.WriteFile(filepath.Join(dir, ".env"), []byte("# app settings\nDATABASE_URL=postgres://app@db:5432/app"), 0o600)

	out, code := script(t, dir, path, "setup-production-env.sh", nil)
	if code != 0 {
		t.Fatalf("exit status %d:\n%s", code, out)
	}
	env := readEnv(t, dir)
	secret := env["SESSION_SECRET"]
	if len(secret) != 43 || env["NODE_ENV"] != "production" || env["USE_POSTGRES"] != "true" || env["DATABASE_URL"] != "postgres://app@db:5432/app" {
		t.Errorf(".env after setup: %v", env)
	}
	if strings.Contains(out, secret) {
		t.Errorf("the script printed the secret:\n%s", out)
	}
	if strings.Contains(out, "Add DATABASE_URL") {
		t.Errorf("asks for a DATABASE_URL the file has:\n%s", out)
	}
	if info, _ := os.Stat(filepath.Join(dir, ".env")); info.Mode().Perm() != 0o600 {
		t.Errorf(".env mode %v, want 0600", info.Mode().Perm())
	}

	out, code = script(t, dir, path, "setup-production-env.sh", nil)
	if again := readEnv(t, dir); code != 0 || again["SESSION_SECRET"] != secret || strings.Count(mustRead(t, dir), "NODE_ENV=") != 1 {
		t.Errorf("a second run changed the file (exit %d):\n%s", code, out)
	}

	out, code = script(t, dir, path, "setup-production-env.sh", nil, "--rotate")
	rotated := readEnv(t, dir)
	if code != 0 || rotated["SESSION_SECRET"] == secret || rotated["SESSION_SECRET_PREVIOUS"] != secret {
		t.Errorf("--rotate (exit %d) left %v:\n%s", code, rotated, out)
	}

	if out, code = script(t, dir, path, "setup-production-env.sh", nil, "--bogus"); code != 2 {
		t.Errorf("an unknown argument: exit %d, want 2:\n%s", code, out)
	}
}

func mustRead(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, ".env"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestCheckSessionConfigScript(t *testing.T) {
	t.Parallel()
	bin := sessionctlDir(t)
	path := bin + string(os.PathListSeparator) + systemPath(t)
	dir := t.TempDir()
	if out, code := script(t, dir, path, "setup-production-env.sh", nil); code != 0 {
		t.Fatalf("setup: %s", out)
	}
	// DATABASE_URL and the table come from the environment, the rest from
	// the .env the setup script wrote.
	env := map[string]string{"DATABASE_URL": pgtest.URL(t), "SESSION_TABLE": pgtest.Schema(t)}

	out, code := script(t, dir, path, "check-session-config.sh", env)
	if code != 1 || !regexp.MustCompile(`(?m)^FAIL  session table .*does not exist.*sessionctl migrate --env-file .env`).MatchString(out) {
		t.Errorf("before migrating: exit %d, want 1 and the table's failure:\n%s", code, out)
	}

	migrate := exec.Command(filepath.Join(bin, "sessionctl"), "migrate", "--env-file", ".env")
	migrate.Dir = dir
	migrate.Env = append(os.Environ(), "DATABASE_URL="+env["DATABASE_URL"], "SESSION_TABLE="+env["SESSION_TABLE"])
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}

	out, code = script(t, dir, path, "check-session-config.sh", env)
	if code != 0 || strings.Contains(out, "FAIL") || !strings.Contains(out, "PASS  SESSION_SECRET") {
		t.Errorf("after migrating: exit %d, want 0:\n%s", code, out)
	}

	out, code = script(t, dir, path, "check-session-config.sh", env, "--json")
	var results []map[string]string
	if err := json.Unmarshal([]byte(out), &results); err != nil || code != 0 || len(results) == 0 {
		t.Errorf("--json passed through: exit %d, %v:\n%s", code, err, out)
	}
}

// TestScriptsBuildSessionctlWhenNotInstalled runs a script with no
// sessionctl on the PATH, as on a fresh checkout.
func TestScriptsBuildSessionctlWhenNotInstalled(t *testing.T) {
	t.Parallel()
	requireTools(t)
	path := systemPath(t)
	for _, dir := range filepath.SplitList(path) {
		if _, err := os.Stat(filepath.Join(dir, "sessionctl")); err == nil {
			t.Skipf("sessionctl is installed in %s, so the scripts would not build it", dir)
		}
	}
	dir := t.TempDir()
	out, code := script(t, dir, path, "check-session-config.sh", nil, "--help")
	if code != 0 || !strings.Contains(out, "Usage: sessionctl check") {
		t.Errorf("exit %d, want 0 and sessionctl's usage:\n%s", code, out)
	}
	out, code = script(t, dir, path, "setup-production-env.sh", nil)
	if code != 0 || len(readEnv(t, dir)["SESSION_SECRET"]) != 43 {
		t.Errorf("setup without sessionctl installed: exit %d:\n%s", code, out)
	}
}
