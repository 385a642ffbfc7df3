// Package nodetest runs examples/express-legacy, the Node app Smart
// Scheduler used before this library, for tests that check the library
// against what express-session and connect-pg-simple really write.
//
// The tests need node on the PATH and the app's packages installed (npm ci
// in examples/express-legacy). Without them they skip, unless
// SESSION_REQUIRE_NODE=1, which makes them fail: CI sets it so that a
// missing Node never passes as green.
package nodetest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// startTimeout bounds the wait for the app's listening line; node takes
// about a third of a second, more on a loaded machine.
const startTimeout = 30 * time.Second

// listeningPrefix starts the one line server.js prints once it accepts
// connections.
const listeningPrefix = "listening on "

// App is a running examples/express-legacy server, stopped when its test
// ends.
type App struct {
	url    string
	stderr *lockedBuffer
}

// URL is the app's base URL, such as "http://127.0.0.1:41609".
func (a *App) URL() string { return a.url }

// Require skips t, or fails it under SESSION_REQUIRE_NODE=1, when node or
// the app's installed packages are missing, and returns the app's
// directory otherwise.
func Require(t testing.TB) string {
	t.Helper()
	dir, err := appDir()
	if err == nil {
		_, err = exec.LookPath("node")
	}
	if err == nil {
		// npm ci writes this last; without it the install is missing or
		// was interrupted.
		_, err = os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json"))
		if err != nil {
			err = fmt.Errorf("the app's packages are not installed (%w): run npm ci in %s", err, dir)
		}
	}
	if err != nil {
		if os.Getenv("SESSION_REQUIRE_NODE") == "1" {
			t.Fatalf("SESSION_REQUIRE_NODE=1 but %v", err)
		}
		t.Skipf("no Node app: %v", err)
	}
	return dir
}

// appDir finds examples/express-legacy from the test's working directory,
// which go test sets to the package's directory, by walking up to the
// module's go.mod.
func appDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "examples", "express-legacy"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the test's working directory")
		}
		dir = parent
	}
}

// StartExpressApp runs "node server.js" in examples/express-legacy with the
// environment of the test binary plus env (which wins; PORT defaults to 0,
// a free port), and returns once the app listens. The app, and anything it
// started, is killed when the test ends; its standard error is logged if
// the test failed.
func StartExpressApp(t testing.TB, env map[string]string) *App {
	t.Helper()
	dir := Require(t)
	cmd := exec.Command("node", "server.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PORT=0")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v) // exec keeps the last of duplicates
	}
	app := &App{stderr: &lockedBuffer{}}
	cmd.Stderr = app.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("nodetest: %v", err)
	}
	ownProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("nodetest: start node: %v", err)
	}
	lines := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		first := true
		for sc.Scan() {
			if first {
				lines <- sc.Text()
				first = false
			}
		}
		if first {
			close(lines)
		}
		// Drain anything else, so the app never blocks on a full pipe.
		io.Copy(io.Discard, stdout)
	}()
	t.Cleanup(func() {
		killProcessGroup(cmd)
		// Wait closes stdout, so the reader must be done first; it is
		// once the killed group no longer holds the pipe open.
		<-done
		cmd.Wait()
		if stderr := app.stderr.String(); t.Failed() && stderr != "" {
			t.Logf("express-legacy stderr:\n%s", stderr)
		}
	})

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case line, ok := <-lines:
		url, found := strings.CutPrefix(line, listeningPrefix)
		if !ok || !found || !strings.HasPrefix(url, "http://127.0.0.1:") {
			t.Fatalf("nodetest: express-legacy printed %q, want %q followed by its URL; stderr:\n%s", line, listeningPrefix, app.stderr.String())
		}
		app.url = url
	case <-timer.C:
		t.Fatalf("nodetest: express-legacy printed no listening line within %v; stderr:\n%s", startTimeout, app.stderr.String())
	}
	return app
}

// lockedBuffer is a bytes.Buffer that the process's output goroutine and
// the test may use at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
