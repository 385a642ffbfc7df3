package main

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/smartscheduler/session/internal/pgtest"
)

// The seed's two scripts, run with bash exactly as operators run them: the
// canonical ones at the repository root, from the root and copied into an
// app's module, and the example's wrappers for them.

// sessionctlDir returns a directory holding a freshly built sessionctl.
func sessionctlDir(t *testing.T) string {
	t.Helper()
	requireTools(t, "bash", "go")
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "sessionctl"), "github.com/smartscheduler/session/cmd/sessionctl")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build sessionctl: %v\n%s", err, out)
	}
	return dir
}

// requireTools skips the test when one of tools is not on the PATH, except
// in CI (CI set), where a missing tool is a broken machine and fails it.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not on the PATH", tool)
			}
			t.Skipf("%s is not on the PATH", tool)
		}
	}
}

// example is the path of one of the example's wrapper scripts.
func example(t *testing.T, name string) string {
	t.Helper()
	path, err := filepath.Abs(name)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// repositoryRoot is the directory of the library's go.mod, two levels up.
func repositoryRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil || !strings.HasPrefix(string(data), "module github.com/smartscheduler/session\n") {
		t.Fatalf("%s is not the library's module: %v", root, err)
	}
	return root
}

// script runs bash with name (as the shell sees it from dir, like
// "./setup-production-env.sh") in dir, with PATH and env as its only
// session-related environment, and returns its output and exit status.
func script(t *testing.T, dir, path, name string, env map[string]string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{name}, args...)...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		key, _, _ := strings.Cut(kv, "=")
		switch {
		case key == "PATH", key == "NODE_ENV", key == "APP_ENV", key == "USE_POSTGRES", key == "DATABASE_URL", strings.HasPrefix(key, "SESSION_"), strings.HasPrefix(key, "GIT_"):
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
	err := cmd.Run()
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
	t.Helper()
	goBinary, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on the PATH")
	}
	path := filepath.Dir(goBinary) + string(os.PathListSeparator) + "/usr/bin" + string(os.PathListSeparator) + "/bin"
	for _, dir := range filepath.SplitList(path) {
		if _, err := os.Stat(filepath.Join(dir, "sessionctl")); err == nil {
			t.Skipf("sessionctl is installed in %s, so the scripts would not look further", dir)
		}
	}
	return path
}

// git runs git in dir.
func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// repositoryCopy copies the repository's files (those git tracks or would
// add; never .git, nor an ignored .env) into a new git work tree, so the
// scripts can run at its root as the seed runs them without writing into
// this one.
func repositoryCopy(t *testing.T) string {
	t.Helper()
	requireTools(t, "git")
	root, dst := repositoryRoot(t), t.TempDir()
	list := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	list.Dir = root
	names, err := list.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for name := range strings.SplitSeq(strings.TrimSuffix(string(names), "\x00"), "\x00") {
		info, err := os.Lstat(filepath.Join(root, name))
		if err != nil || !info.Mode().IsRegular() {
			continue // deleted from the work tree but not yet from the index
		}
		data, err := os.ReadFile(filepath.Join(root, name))
		if err == nil {
			err = os.MkdirAll(filepath.Dir(filepath.Join(dst, name)), 0o755)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dst, name), data, info.Mode().Perm())
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	git(t, dst, "init", "-q")
	return dst
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
	setup := example(t, "setup-production-env.sh")
	dir := t.TempDir()
	// An operator's existing file: its lines must survive.
	os.WriteFile(filepath.Join(dir, ".env"), []byte("# app settings\nDATABASE_URL=postgres://app@db:5432/app"), 0o600)

	out, code := script(t, dir, path, setup, nil)
	if code != 0 {
		t.Fatalf("exit status %d:\n%s", code, out)
	}
	env := readEnv(t, dir)
	secret := env["SESSION_SECRET"]
	if len(secret) != 43 || env["NODE_ENV"] != "production" || env["USE_POSTGRES"] != "true" || env["DATABASE_URL"] != "postgres://app@db:5432/app" {
		t.Errorf(".env after setup: SESSION_SECRET of %d characters, NODE_ENV=%q, USE_POSTGRES=%q, DATABASE_URL=%q", len(secret), env["NODE_ENV"], env["USE_POSTGRES"], env["DATABASE_URL"])
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

	out, code = script(t, dir, path, setup, nil)
	if again := readEnv(t, dir); code != 0 || again["SESSION_SECRET"] != secret || strings.Count(mustRead(t, dir), "NODE_ENV=") != 1 {
		t.Errorf("a second run changed the file (exit %d):\n%s", code, out)
	}

	out, code = script(t, dir, path, setup, nil, "--rotate")
	rotated := readEnv(t, dir)
	if code != 0 || rotated["SESSION_SECRET"] == secret || rotated["SESSION_SECRET_PREVIOUS"] != secret {
		t.Errorf("--rotate (exit %d): secret changed %v, old secret in SESSION_SECRET_PREVIOUS %v:\n%s", code, rotated["SESSION_SECRET"] != secret, rotated["SESSION_SECRET_PREVIOUS"] == secret, out)
	}

	if out, code = script(t, dir, path, setup, nil, "--bogus"); code != 2 {
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
	setup, check := example(t, "setup-production-env.sh"), example(t, "check-session-config.sh")
	dir := t.TempDir()
	if out, code := script(t, dir, path, setup, nil); code != 0 {
		t.Fatalf("setup: %s", out)
	}
	// DATABASE_URL and the table come from the environment, the rest from
	// the .env the setup script wrote.
	env := map[string]string{"DATABASE_URL": pgtest.URL(t), "SESSION_TABLE": pgtest.Schema(t)}

	out, code := script(t, dir, path, check, env)
	if code != 1 || !regexp.MustCompile(`(?m)^FAIL  session table .*does not exist.*sessionctl migrate --env-file .env`).MatchString(out) {
		t.Errorf("before migrating: exit %d, want 1 and the table's failure:\n%s", code, out)
	}

	migrate := exec.Command(filepath.Join(bin, "sessionctl"), "migrate", "--env-file", ".env")
	migrate.Dir = dir
	migrate.Env = append(os.Environ(), "DATABASE_URL="+env["DATABASE_URL"], "SESSION_TABLE="+env["SESSION_TABLE"])
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}

	out, code = script(t, dir, path, check, env)
	if code != 0 || strings.Contains(out, "FAIL") || !strings.Contains(out, "PASS  SESSION_SECRET") {
		t.Errorf("after migrating: exit %d, want 0:\n%s", code, out)
	}

	out, code = script(t, dir, path, check, env, "--json")
	var results []map[string]string
	if err := json.Unmarshal([]byte(out), &results); err != nil || code != 0 || len(results) == 0 {
		t.Errorf("--json passed through: exit %d, %v:\n%s", code, err, out)
	}
}

// testDatabase is the environment in which check finds the test server
// and a fresh schema without a session table, so it fails on that table:
// exit status 1, which must get through the scripts unchanged.
func testDatabase(t *testing.T) map[string]string {
	t.Helper()
	return map[string]string{"DATABASE_URL": pgtest.URL(t), "SESSION_TABLE": pgtest.Schema(t)}
}

var tableMissing = regexp.MustCompile(`(?m)^FAIL  session table .*does not exist`)

// assertSetUp checks the .env that setup-production-env.sh wrote in dir,
// and that out does not show its secret.
func assertSetUp(t *testing.T, dir, out string) {
	t.Helper()
	env := readEnv(t, dir)
	if secret := env["SESSION_SECRET"]; len(secret) != 43 || strings.Contains(out, secret) {
		t.Errorf("SESSION_SECRET of %d characters, printed %v; want 43, not printed", len(secret), len(secret) > 0 && strings.Contains(out, secret))
	}
	if env["NODE_ENV"] != "production" || env["USE_POSTGRES"] != "true" {
		t.Errorf("NODE_ENV=%q USE_POSTGRES=%q, want production and true", env["NODE_ENV"], env["USE_POSTGRES"])
	}
	if info, err := os.Stat(filepath.Join(dir, ".env")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf(".env: %v, %v; want mode 0600", info, err)
	}
}

// TestScriptsFromTheRepositoryRoot runs both scripts as the seed document
// does, "bash ./setup-production-env.sh" at the root of a checkout of this
// repository, without sessionctl installed: they build it from the
// checkout, and setup writes a .env that the repository's .gitignore keeps
// out of commits.
func TestScriptsFromTheRepositoryRoot(t *testing.T) {
	t.Parallel()
	requireTools(t, "bash", "go")
	path := systemPath(t)
	root := repositoryCopy(t)

	out, code := script(t, root, path, "./setup-production-env.sh", nil)
	if code != 0 {
		t.Fatalf("setup: exit status %d:\n%s", code, out)
	}
	assertSetUp(t, root, out)

	out, code = script(t, root, path, "./check-session-config.sh", testDatabase(t))
	if code != 1 || !tableMissing.MatchString(out) || !strings.Contains(out, "PASS  SESSION_SECRET") {
		t.Errorf("check: exit %d, want 1 with the missing table and the secret from .env:\n%s", code, out)
	}
	assertNoSecret(t, root, out)
}

// TestScriptsCopiedIntoAnApp copies the two scripts, alone, into an app's
// own module that requires the library (through a replace directive naming
// this repository, so nothing is downloaded: GOPROXY=off) and runs them
// there without sessionctl installed: they build the version the app's
// go.mod names.
func TestScriptsCopiedIntoAnApp(t *testing.T) {
	t.Parallel()
	requireTools(t, "bash", "go")
	path := systemPath(t)
	root, app := repositoryRoot(t), t.TempDir()
	goMod := "module example.com/app\n\ngo 1.26.0\n\nrequire github.com/smartscheduler/session v0.0.0\n\nreplace github.com/smartscheduler/session => " + root + "\n"
	sums, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"go.mod": []byte(goMod), "go.sum": sums}
	for _, name := range []string{"setup-production-env.sh", "check-session-config.sh"} {
		if files[name], err = os.ReadFile(filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(app, name), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	offline := map[string]string{"GOPROXY": "off", "GOFLAGS": "-mod=readonly"}

	out, code := script(t, app, path, "./setup-production-env.sh", offline)
	if code != 0 {
		t.Fatalf("setup: exit status %d:\n%s", code, out)
	}
	assertSetUp(t, app, out)

	env := testDatabase(t)
	maps.Copy(env, offline)
	out, code = script(t, app, path, "./check-session-config.sh", env)
	if code != 1 || !tableMissing.MatchString(out) {
		t.Errorf("check: exit %d, want 1 with the missing table:\n%s", code, out)
	}
	assertNoSecret(t, app, out)
}

// assertNoSecret fails if out shows the SESSION_SECRET in dir's .env.
func assertNoSecret(t *testing.T, dir, out string) {
	t.Helper()
	if secret := readEnv(t, dir)["SESSION_SECRET"]; secret == "" || strings.Contains(out, secret) {
		t.Errorf("no secret in .env, or the output shows it")
	}
}

// TestScriptsSayHowToInstallSessionctl runs the scripts where they cannot
// find sessionctl: not installed, and not in a Go module that requires the
// library (or without Go at all).
func TestScriptsSayHowToInstallSessionctl(t *testing.T) {
	t.Parallel()
	requireTools(t, "bash", "go", "cat")
	root := repositoryRoot(t)
	// Only what the scripts need to reach their message: no git, no Go.
	bare := t.TempDir()
	catPath, _ := exec.LookPath("cat")
	if err := os.Symlink(catPath, filepath.Join(bare, "cat")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"setup-production-env.sh", "check-session-config.sh"} {
		for _, tt := range []struct {
			path, want string
		}{
			{systemPath(t), "not in a Go module that requires github.com/smartscheduler/session"},
			{bare, "Go is not installed either"},
		} {
			dir := t.TempDir() // in no module
			out, code := script(t, dir, tt.path, filepath.Join(root, name), nil)
			if code != 1 || !strings.Contains(out, tt.want) || !strings.Contains(out, "go install github.com/smartscheduler/session/cmd/sessionctl@latest") {
				t.Errorf("%s with PATH=%s: exit %d, want 1 saying %q and how to install:\n%s", name, tt.path, code, tt.want, out)
			}
			if names, _ := os.ReadDir(dir); len(names) != 0 {
				t.Errorf("%s wrote %v", name, names)
			}
		}
	}
}

// TestSetupRefusesAnEnvFileGitWouldCommit runs the setup script in git work
// trees: it must write no secret into a .env that git tracks or does not
// ignore.
func TestSetupRefusesAnEnvFileGitWouldCommit(t *testing.T) {
	t.Parallel()
	requireTools(t, "bash", "go", "git")
	path := sessionctlDir(t) + string(os.PathListSeparator) + systemPath(t)
	setup := filepath.Join(repositoryRoot(t), "setup-production-env.sh")
	tests := []struct {
		name    string
		arrange func(t *testing.T, dir string)
		want    string // in the output of a refusal; "" where setup must succeed
	}{
		{"tracked, though ignored", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ".gitignore"), []byte(".env\n"), 0o644)
			os.WriteFile(filepath.Join(dir, ".env"), []byte("NODE_ENV=production\n"), 0o600)
			git(t, dir, "add", "--force", ".env", ".gitignore")
		}, "is tracked by git"},
		{"not ignored", func(t *testing.T, dir string) {}, "git does not ignore .env"},
		{"not ignored, existing", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ".env"), []byte("NODE_ENV=production\n"), 0o600)
		}, "git does not ignore .env"},
		{"ignored", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ".gitignore"), []byte(".env\n"), 0o644)
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			git(t, dir, "init", "-q")
			tt.arrange(t, dir)
			before, _ := os.ReadFile(filepath.Join(dir, ".env"))
			out, code := script(t, dir, path, setup, nil)
			after, _ := os.ReadFile(filepath.Join(dir, ".env"))
			if tt.want == "" {
				if code != 0 {
					t.Fatalf("exit %d:\n%s", code, out)
				}
				assertSetUp(t, dir, out)
				return
			}
			if code != 1 || !strings.Contains(out, tt.want) || !strings.Contains(out, ".gitignore") || !strings.Contains(out, "Nothing was written") {
				t.Errorf("exit %d, want 1 saying %q and how to fix it:\n%s", code, tt.want, out)
			}
			if !bytes.Equal(before, after) {
				t.Errorf(".env changed although setup refused")
			}
		})
	}
}

// TestScriptsShareRunSessionctl keeps the two copies of run_sessionctl
// alike: each script carries its own, so that either can be copied alone.
func TestScriptsShareRunSessionctl(t *testing.T) {
	t.Parallel()
	root := repositoryRoot(t)
	var bodies []string
	for _, name := range []string{"setup-production-env.sh", "check-session-config.sh"} {
		data, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		_, body, _ := strings.Cut(string(data), "# --- run_sessionctl:")
		body, _, found := strings.Cut(body, "# --- end run_sessionctl")
		if !found {
			t.Fatalf("%s has no run_sessionctl between its markers", name)
		}
		bodies = append(bodies, body)
	}
	if bodies[0] != bodies[1] {
		t.Errorf("the scripts' run_sessionctl differ: change both alike")
	}
}
