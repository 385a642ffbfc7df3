package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// envFile is a KEY=VALUE file in the subset that dotenv, docker --env-file,
// systemd's EnvironmentFile and a shell's "set -a; . ./.env" read alike:
// one assignment a line, "#" comments, blank lines, an optional "export "
// prefix, and values bare, 'single-quoted' (literal) or "double-quoted"
// (with \n, \", \\ escapes). Rewriting it changes only the assignments set,
// so comments, order and unrelated lines stay exactly as the operator left
// them.
type envFile struct {
	path   string
	lines  []string // without their "\n"; a "\r" stays, so CRLF files stay CRLF
	mode   fs.FileMode
	exists bool
}

var envKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// readEnvFile reads path. A missing file is an empty envFile that write
// creates with mode 0600, since it will hold a secret. Any line that is not
// an assignment, a comment or blank is an error naming the line, because a
// value silently skipped is a setting silently lost.
func readEnvFile(path string) (*envFile, error) {
	f := &envFile{path: path, mode: 0o600}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return f, nil
	case err != nil:
		return nil, fmt.Errorf("read env file: %w", err)
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read env file: %w", err)
	}
	f.exists, f.mode = true, info.Mode().Perm()
	text := strings.TrimSuffix(string(data), "\n")
	if text != "" {
		f.lines = strings.Split(text, "\n")
	}
	for i, line := range f.lines {
		if _, _, _, err := parseEnvLine(line); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
	}
	return f, nil
}

// parseEnvLine returns the assignment on line, ok false for a comment or a
// blank line.
func parseEnvLine(line string) (key, value string, ok bool, err error) {
	rest := strings.TrimSpace(strings.TrimSuffix(line, "\r"))
	if rest == "" || strings.HasPrefix(rest, "#") {
		return "", "", false, nil
	}
	if after, found := strings.CutPrefix(rest, "export"); found && after != "" && (after[0] == ' ' || after[0] == '\t') {
		rest = strings.TrimSpace(after)
	}
	key, raw, found := strings.Cut(rest, "=")
	key = strings.TrimSpace(key)
	if !found || !envKey.MatchString(key) {
		return "", "", false, errors.New(`not a KEY=VALUE line: write assignments as NAME=value, comments starting with "#"`)
	}
	value, err = parseEnvValue(strings.TrimSpace(raw))
	if err != nil {
		return "", "", false, fmt.Errorf("%s: %w", key, err)
	}
	return key, value, true, nil
}

func parseEnvValue(raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	var value, tail string
	switch raw[0] {
	case '\'':
		end := strings.IndexByte(raw[1:], '\'')
		if end < 0 {
			return "", errors.New("the single quote is not closed on this line")
		}
		value, tail = raw[1:1+end], raw[2+end:]
	case '"':
		var b strings.Builder
		i := 1
		for ; i < len(raw) && raw[i] != '"'; i++ {
			c := raw[i]
			if c == '\\' && i+1 < len(raw) {
				i++
				switch raw[i] {
				case 'n':
					c = '\n'
				case 'r':
					c = '\r'
				case 't':
					c = '\t'
				default: // \" \\ \$ \` stand for themselves
					c = raw[i]
				}
			}
			b.WriteByte(c)
		}
		if i == len(raw) {
			return "", errors.New("the double quote is not closed on this line")
		}
		value, tail = b.String(), raw[i+1:]
	default:
		// A bare value ends at a comment: "#" after white space.
		value = raw
		if i := strings.Index(raw, " #"); i >= 0 {
			value = raw[:i]
		}
		if i := strings.Index(value, "\t#"); i >= 0 {
			value = value[:i]
		}
		return strings.TrimSpace(value), nil
	}
	if tail = strings.TrimSpace(tail); tail != "" && !strings.HasPrefix(tail, "#") {
		return "", fmt.Errorf("unexpected %q after the closing quote", tail)
	}
	return value, nil
}

// lookup returns the value of key's last assignment, the one every reader
// of the file ends up with.
func (f *envFile) lookup(key string) (string, bool) {
	value, found := "", false
	for _, line := range f.lines {
		if k, v, ok, _ := parseEnvLine(line); ok && k == key {
			value, found = v, true
		}
	}
	return value, found
}

// set makes key's value value: every assignment of key is rewritten in
// place (keeping its "export "), so no stale copy survives further up, or
// one is appended.
func (f *envFile) set(key, value string) {
	replaced := false
	for i, line := range f.lines {
		k, _, ok, _ := parseEnvLine(line)
		if !ok || k != key {
			continue
		}
		prefix := ""
		if strings.HasPrefix(strings.TrimSpace(line), "export") {
			prefix = "export "
		}
		crlf := ""
		if strings.HasSuffix(line, "\r") {
			crlf = "\r"
		}
		f.lines[i] = prefix + key + "=" + quoteEnvValue(value) + crlf
		replaced = true
	}
	if !replaced {
		f.lines = append(f.lines, key+"="+quoteEnvValue(value))
	}
}

var bareEnvValue = regexp.MustCompile(`^[A-Za-z0-9_./:@%+,=-]*$`)

// quoteEnvValue writes value so every reader gets it back unchanged: bare
// when it is plain (generated secrets always are, which docker --env-file,
// taking values literally, needs), else in single quotes, which no reader
// expands, else in double quotes.
func quoteEnvValue(value string) string {
	switch {
	case bareEnvValue.MatchString(value):
		return value
	case !strings.ContainsAny(value, "'\n\r"):
		return "'" + value + "'"
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "`", "\\`", "\n", `\n`, "\r", `\r`)
	return `"` + r.Replace(value) + `"`
}

// write replaces the file atomically: a temporary file in the same
// directory, with the original's mode (and, where the system has them, its
// owner), renamed over it. A crash leaves the old file or the new one,
// never half of either. A symbolic link is followed, so the link survives.
func (f *envFile) write() error {
	target := f.path
	if resolved, err := filepath.EvalSymlinks(f.path); err == nil {
		target = resolved
	}
	tmp, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write env file: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	text := strings.Join(f.lines, "\n")
	if text != "" {
		text += "\n"
	}
	if f.exists {
		keepOwner(tmp, target)
	}
	if err := tmp.Chmod(f.mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write env file: %w", err)
	}
	if _, err := tmp.WriteString(text); err != nil {
		tmp.Close()
		return fmt.Errorf("write env file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write env file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write env file: %w", err)
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return fmt.Errorf("write env file: %w", err)
	}
	f.exists = true
	return nil
}

// environment is what a subcommand reads its configuration from: the
// process environment and, with --env-file, a file.
type environment struct {
	env  func(string) (string, bool)
	file *envFile // nil without --env-file
}

// loadEnvironment reads envFile, if named, beside env.
func loadEnvironment(env func(string) (string, bool), envFile string) (environment, error) {
	e := environment{env: env}
	if envFile == "" {
		return e, nil
	}
	f, err := readEnvFile(envFile)
	if err != nil {
		return e, err
	}
	if !f.exists {
		return e, fmt.Errorf("env file %s does not exist: create it with \"sessionctl secret --env-file %s\", or leave out --env-file", envFile, envFile)
	}
	e.file = f
	return e, nil
}

// lookup lets a variable set in the process environment win over the file,
// as dotenv does, so sessionctl sees what the app will see.
func (e environment) lookup(name string) (string, bool) {
	if v, ok := e.env(name); ok {
		return v, true
	}
	if e.file != nil {
		return e.file.lookup(name)
	}
	return "", false
}

// origin says where name's value comes from, for reports: the environment
// shadowing the file is a classic cause of "but I set it".
func (e environment) origin(name string) string {
	if e.file == nil {
		return ""
	}
	if _, ok := e.env(name); ok {
		return " (from the environment)"
	}
	if _, ok := e.file.lookup(name); ok {
		return " (from " + e.file.path + ")"
	}
	return ""
}
