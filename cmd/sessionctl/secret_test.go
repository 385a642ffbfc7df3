package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smartscheduler/session"
)

func TestParseEnvLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		line, key, value string
		assignment       bool
		err              string
	}{
		{line: "", assignment: false},
		{line: "   # a comment", assignment: false},
		{line: "A=b", key: "A", value: "b", assignment: true},
		{line: "  export  SESSION_SECRET = abc  ", key: "SESSION_SECRET", value: "abc", assignment: true},
		{line: "exported=1", key: "exported", value: "1", assignment: true},
		{line: "A=", key: "A", value: "", assignment: true},
		{line: "A=b # note", key: "A", value: "b", assignment: true},
		{line: "A=b#c", key: "A", value: "b#c", assignment: true},
		{line: "A='x # y $HOME'", key: "A", value: "x # y $HOME", assignment: true},
		{line: `A="a \"b\" \\ \$c\nd" # note`, key: "A", value: "a \"b\" \\ $c\nd", assignment: true},
		{line: "A=b\r", key: "A", value: "b", assignment: true},
		{line: "URL=postgres://u:p@h:5432/d?sslmode=require", key: "URL", value: "postgres://u:p@h:5432/d?sslmode=require", assignment: true},
		{line: "just words", err: "not a KEY=VALUE line"},
		{line: "1A=b", err: "not a KEY=VALUE line"},
		{line: "A='open", err: "single quote is not closed"},
		{line: `A="open`, err: "double quote is not closed"},
		{line: `A="x" y`, err: "after the closing quote"},
	}
	for _, tt := range tests {
		key, value, ok, err := parseEnvLine(tt.line)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseEnvLine(%q) error = %v, want one containing %q", tt.line, err, tt.err)
			}
			continue
		}
		if err != nil || ok != tt.assignment || key != tt.key || value != tt.value {
			t.Errorf("parseEnvLine(%q) = %q, %q, %v, %v; want %q, %q, %v", tt.line, key, value, ok, err, tt.key, tt.value, tt.assignment)
		}
	}
}

func TestQuoteEnvValueRoundTrips(t *testing.T) {
	t.Parallel()
	for _, value := range []string{
		"", "plain", newSecret(), "a,b,c", "with space", "it's", `"quoted"`, "$HOME", "back\\slash", "line\nbreak", "tab\there", "a # b", "`cmd`",
	} {
		_, got, _, err := parseEnvLine("K=" + quoteEnvValue(value))
		if err != nil || got != value {
			t.Errorf("value %q written as %s reads back as %q, %v", value, quoteEnvValue(value), got, err)
		}
	}
}

func TestSecretPrintsA256BitSecret(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 3 {
		stdout, stderr, code := sessionctl(t, nil, "secret")
		secret := strings.TrimSuffix(stdout, "\n")
		if code != exitOK || stderr != "" {
			t.Fatalf("exit status %d, stderr %q", code, stderr)
		}
		raw, err := base64.RawURLEncoding.DecodeString(secret)
		if err != nil || len(secret) != 43 || len(raw) != 32 {
			t.Fatalf("secret %q: %d characters, %d bytes, %v; want 43 base64url characters of 32 bytes", secret, len(secret), len(raw), err)
		}
		if secretProblem(secret) != "" {
			t.Errorf("the library rejects the secret: %s", secretProblem(secret))
		}
		if seen[secret] {
			t.Fatalf("secret %q printed twice", secret)
		}
		seen[secret] = true
	}
}

// TestSecretGeneratorPassesTheBar draws a thousand secrets from the
// generator "sessionctl secret" uses: production must accept every one,
// however its random characters happen to fall.
func TestSecretGeneratorPassesTheBar(t *testing.T) {
	t.Parallel()
	for range 1000 {
		if secret := newSecret(); secretProblem(secret) != "" {
			t.Fatalf("production refuses a generated secret: %s", secretProblem(secret))
		}
	}
}

// envFileValue reads key from the file at path, as the app's loaders would.
func envFileValue(t *testing.T, path, key string) string {
	t.Helper()
	f, err := readEnvFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := f.lookup(key)
	return v
}

func TestSecretEnvFile(t *testing.T) {
	t.Parallel()
	t.Run("creates the file, private, without printing the secret", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), ".env")
		stdout, stderr, code := sessionctl(t, nil, "secret", "--env-file", path)
		if code != exitOK {
			t.Fatalf("exit status %d: %s", code, stderr)
		}
		secret := envFileValue(t, path, "SESSION_SECRET")
		if len(secret) != 43 {
			t.Fatalf("SESSION_SECRET = %q", secret)
		}
		assertNoSecrets(t, map[string]string{"SESSION_SECRET": secret}, stdout, stderr)
		info, err := os.Stat(path)
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, %v; want 0600", info.Mode().Perm(), err)
		}
	})

	t.Run("keeps other lines byte for byte, and makes a readable file private", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		path := filepath.Join(dir, ".env")
		before := "# production settings\n\nexport NODE_ENV=production\nDATABASE_URL='postgres://app:p#w@db:5432/app'  # primary\n"
		if err := os.WriteFile(path, []byte(before), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, 0o640); err != nil { // whatever the umask
			t.Fatal(err)
		}
		stdout, stderr, code := sessionctl(t, nil, "secret", "--env-file", path)
		if code != exitOK {
			t.Fatalf("exit status %d: %s", code, stderr)
		}
		after, _ := os.ReadFile(path)
		secret := envFileValue(t, path, "SESSION_SECRET")
		if want := before + "SESSION_SECRET=" + secret + "\n"; string(after) != want {
			t.Errorf("file is\n%s\nwant\n%s", after, want)
		}
		if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600: a file holding the secret must not stay group-readable", info.Mode().Perm())
		}
		if !strings.Contains(stdout, "was mode 0640") || !strings.Contains(stdout, "now 0600") {
			t.Errorf("the change of mode is not reported:\n%s", stdout)
		}
		if names := dirNames(t, dir); len(names) != 1 {
			t.Errorf("files left beside it: %v", names)
		}
	})

	t.Run("keeps a stricter mode", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), ".env")
		os.WriteFile(path, []byte("NODE_ENV=production\n"), 0o400)
		if _, stderr, code := sessionctl(t, nil, "secret", "--env-file", path); code != exitOK {
			t.Fatalf("exit status %d: %s", code, stderr)
		}
		if info, _ := os.Stat(path); info.Mode().Perm() != 0o400 {
			t.Errorf("mode %v, want 0400 kept", info.Mode().Perm())
		}
	})

	t.Run("refuses a symbolic link and leaves its target alone", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		path := filepath.Join(dir, ".env")
		unrelated := filepath.Join(dir, "unrelated.conf")
		before := "# not an env file of the app's\nA=1\n"
		os.WriteFile(unrelated, []byte(before), 0o644)
		if err := os.Symlink(unrelated, path); err != nil {
			t.Skipf("cannot make a symbolic link here: %v", err)
		}
		_, stderr, code := sessionctl(t, nil, "secret", "--env-file", path)
		after, _ := os.ReadFile(unrelated)
		if code != exitFailed || string(after) != before {
			t.Fatalf("exit %d, %s changed: %v", code, unrelated, string(after) != before)
		}
		if !strings.Contains(stderr, path+" is a symbolic link") || !strings.Contains(stderr, "--env-file "+unrelated) {
			t.Errorf("stderr does not name the link and the fix:\n%s", stderr)
		}
		if info, err := os.Lstat(path); err != nil || info.Mode()&os.ModeSymlink == 0 {
			t.Errorf("the link was replaced: %v, %v", info, err)
		}
		if names := dirNames(t, dir); len(names) != 2 {
			t.Errorf("files left beside it: %v", names)
		}
	})

	t.Run("refuses a directory", func(t *testing.T) {
		t.Parallel()
		path := t.TempDir()
		_, stderr, code := sessionctl(t, nil, "secret", "--env-file", path)
		if code != exitFailed || !strings.Contains(stderr, path+" is a directory, not a regular file") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
		if names := dirNames(t, path); len(names) != 0 {
			t.Errorf("files left in it: %v", names)
		}
	})

	t.Run("keeps a good secret", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), ".env")
		before := "SESSION_SECRET=" + newSecret() + "\n"
		os.WriteFile(path, []byte(before), 0o600)
		stdout, _, code := sessionctl(t, nil, "secret", "--env-file", path)
		after, _ := os.ReadFile(path)
		if code != exitOK || string(after) != before || !strings.Contains(stdout, "left it unchanged") {
			t.Errorf("exit status %d, output %q, file changed from %q to %q", code, stdout, before, after)
		}
	})

	t.Run("replaces a placeholder", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), ".env")
		os.WriteFile(path, []byte("export SESSION_SECRET=<random-secure-string>\n"), 0o600)
		stdout, _, code := sessionctl(t, nil, "secret", "--env-file", path)
		after, _ := os.ReadFile(path)
		secret := envFileValue(t, path, "SESSION_SECRET")
		if code != exitOK || len(secret) != 43 || !strings.HasPrefix(string(after), "export SESSION_SECRET=") || !strings.Contains(stdout, "placeholder") {
			t.Errorf("exit status %d, output %q, file %q", code, stdout, after)
		}
	})

	t.Run("rotation keeps every old secret accepted", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), ".env")
		first := newSecret()
		os.WriteFile(path, []byte("SESSION_SECRET="+first+"\nOTHER=1\n"), 0o600)
		stdout, stderr, code := sessionctl(t, nil, "secret", "--env-file", path, "--rotate")
		second := envFileValue(t, path, "SESSION_SECRET")
		if code != exitOK || second == first || envFileValue(t, path, "SESSION_SECRET_PREVIOUS") != first {
			t.Fatalf("after one rotation: exit %d, secret changed %v, previous %q", code, second != first, envFileValue(t, path, "SESSION_SECRET_PREVIOUS"))
		}
		assertNoSecrets(t, map[string]string{"SESSION_SECRET": second, "SESSION_SECRET_PREVIOUS": first}, stdout, stderr)
		sessionctl(t, nil, "secret", "--env-file", path, "--rotate")
		if got, want := envFileValue(t, path, "SESSION_SECRET_PREVIOUS"), second+","+first; got != want {
			t.Errorf("after two rotations SESSION_SECRET_PREVIOUS = %q, want %q", got, want)
		}
		if envFileValue(t, path, "OTHER") != "1" {
			t.Errorf("OTHER was lost")
		}
	})

	t.Run("rotation drops weak secrets instead of keeping them accepted", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), ".env")
		strong := newSecret()
		os.WriteFile(path, []byte("SESSION_SECRET=changeme\nSESSION_SECRET_PREVIOUS="+strong+",abcdefghijklmnopqrstuvwxyz0123456789,short\n"), 0o600)
		stdout, stderr, code := sessionctl(t, nil, "secret", "--env-file", path, "--rotate")
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if got := envFileValue(t, path, "SESSION_SECRET_PREVIOUS"); got != strong {
			t.Errorf("SESSION_SECRET_PREVIOUS = %q, want only the strong retired secret", got)
		}
		for _, want := range []string{"SESSION_SECRET", "is a placeholder", "entry 2", "is predictable", "entry 3", "is 5 bytes", "not kept"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("output does not say %q:\n%s", want, stdout)
			}
		}
		assertNoSecrets(t, map[string]string{"SESSION_SECRET": envFileValue(t, path, "SESSION_SECRET"), "SESSION_SECRET_PREVIOUS": strong + ",abcdefghijklmnopqrstuvwxyz0123456789,changeme"}, stdout, stderr)
	})

	// Moving from express-session, the Node app's weak secret is its users'
	// key to their sessions: rotation keeps it where it verifies only
	// express-session's cookie, and the app starts in production with it.
	t.Run("rotation moves the Node app's weak secret to SESSION_EXPRESS_SECRET", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), ".env")
		os.WriteFile(path, []byte("NODE_ENV=production\nUSE_POSTGRES=true\nDATABASE_URL=postgres://db/app\nSESSION_TABLE=go_session\nSESSION_EXPRESS_TABLE=session\nSESSION_SECRET=keyboard cat\n"), 0o600)
		stdout, stderr, code := sessionctl(t, nil, "secret", "--env-file", path, "--rotate")
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if got := envFileValue(t, path, "SESSION_EXPRESS_SECRET"); got != "keyboard cat" {
			t.Errorf("SESSION_EXPRESS_SECRET = %q, want the Node app's secret", got)
		}
		if got := envFileValue(t, path, "SESSION_SECRET_PREVIOUS"); got != "" {
			t.Errorf("SESSION_SECRET_PREVIOUS = %q, want nothing: the weak secret must not verify this library's cookies", got)
		}
		if !strings.Contains(stdout, "kept in SESSION_EXPRESS_SECRET") {
			t.Errorf("output does not say where the old secret went:\n%s", stdout)
		}
		env := map[string]string{}
		for _, name := range []string{"NODE_ENV", "USE_POSTGRES", "DATABASE_URL", "SESSION_TABLE", "SESSION_EXPRESS_TABLE", "SESSION_SECRET", "SESSION_EXPRESS_SECRET"} {
			env[name] = envFileValue(t, path, name)
		}
		if _, err := session.ConfigFromLookup(func(name string) (string, bool) { v, ok := env[name]; return v, ok }); err != nil {
			t.Errorf("the rotated file does not configure production: %v", err)
		}
	})

	t.Run("stage and promote, and what they refuse", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), ".env")
		if _, stderr, code := sessionctl(t, nil, "secret", "--env-file", path, "--stage"); code != exitFailed || !strings.Contains(stderr, "no SESSION_SECRET to stage") {
			t.Errorf("--stage without a secret: exit %d, %q", code, stderr)
		}
		first, retired := newSecret(), newSecret()
		os.WriteFile(path, []byte("SESSION_SECRET="+first+"\nSESSION_SECRET_PREVIOUS="+retired+"\n"), 0o600)
		if _, stderr, code := sessionctl(t, nil, "secret", "--env-file", path, "--promote"); code != exitFailed || !strings.Contains(stderr, "no staged secret") {
			t.Errorf("--promote without --stage: exit %d, %q; want a refusal, or the retired secret would sign again", code, stderr)
		}
		stdout, stderr, code := sessionctl(t, nil, "secret", "--env-file", path, "--stage")
		previous := strings.Split(envFileValue(t, path, "SESSION_SECRET_PREVIOUS"), ",")
		if code != exitOK || envFileValue(t, path, "SESSION_SECRET") != first || len(previous) != 2 || previous[1] != retired {
			t.Fatalf("--stage: exit %d, %s; previous %d entries", code, stderr, len(previous))
		}
		next := previous[0]
		if !strings.Contains(stdout, "Step 1 of 2") || !strings.Contains(stdout, "--promote") || !strings.Contains(string(mustRead(t, path)), stagedNote+fingerprint(next)) {
			t.Errorf("--stage does not explain the next step, or left no note of the staged secret:\n%s\n%s", stdout, mustRead(t, path))
		}
		if _, stderr, code := sessionctl(t, nil, "secret", "--env-file", path, "--stage"); code != exitFailed || !strings.Contains(stderr, "already stages") {
			t.Errorf("a second --stage: exit %d, %q", code, stderr)
		}
		stdout, stderr, code = sessionctl(t, nil, "secret", "--env-file", path, "--promote")
		if code != exitOK || envFileValue(t, path, "SESSION_SECRET") != next || envFileValue(t, path, "SESSION_SECRET_PREVIOUS") != first+","+retired {
			t.Fatalf("--promote: exit %d, %s", code, stderr)
		}
		if strings.Contains(string(mustRead(t, path)), stagedNote) || !strings.Contains(stdout, "Step 2 of 2") {
			t.Errorf("--promote left the note, or does not say what to do:\n%s\n%s", stdout, mustRead(t, path))
		}
		assertNoSecrets(t, map[string]string{"SESSION_SECRET": next, "SESSION_SECRET_PREVIOUS": first + "," + retired}, stdout, stderr)
	})

	t.Run("refuses a file it cannot read faithfully", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), ".env")
		before := "A=1\nthis is not an assignment\n"
		os.WriteFile(path, []byte(before), 0o600)
		_, stderr, code := sessionctl(t, nil, "secret", "--env-file", path)
		after, _ := os.ReadFile(path)
		if code != exitFailed || !strings.Contains(stderr, ".env:2:") || string(after) != before {
			t.Errorf("exit %d, stderr %q, file %q", code, stderr, after)
		}
	})
}

// dirNames lists dir, to catch temporary files left behind.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
