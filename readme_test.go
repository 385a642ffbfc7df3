package session_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeProgramsCompile builds every complete Go program in README.md
// (a ```go block starting with "package main"), as a package of this
// module laid over the source tree with go build -overlay, so the quick
// start a newcomer copies is known to compile. Nothing is written into the
// tree.
func TestReadmeProgramsCompile(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllSubmatch(readme, -1)
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	overlay := map[string]string{}
	var packages []string
	for i, block := range blocks {
		if !strings.HasPrefix(string(block[1]), "package main") {
			continue
		}
		src := filepath.Join(t.TempDir(), "main.go")
		if err := os.WriteFile(src, block[1], 0o644); err != nil {
			t.Fatal(err)
		}
		dir := fmt.Sprintf("readme_program_%d", i)
		overlay[filepath.Join(root, dir, "main.go")] = src
		packages = append(packages, "./"+dir)
	}
	if len(packages) == 0 {
		t.Fatal("README.md has no complete Go program; the quick start should be one")
	}
	spec, err := json.Marshal(map[string]any{"Replace": overlay})
	if err != nil {
		t.Fatal(err)
	}
	specFile := filepath.Join(t.TempDir(), "overlay.json")
	if err := os.WriteFile(specFile, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, pkg := range packages {
		cmd := exec.Command("go", "build", "-overlay", specFile, "-o", os.DevNull, pkg)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("a program in README.md does not build: %v\n%s", err, out)
		}
	}
}
