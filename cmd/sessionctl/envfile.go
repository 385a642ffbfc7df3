package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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
	path  string
	lines []string // without their "\n"; a "\r" stays, so CRLF files stay CRLF
	// info describes the file as it was opened; nil when it did not exist.
	// write keeps its owner and, within 0600, its mode.
	info fs.FileInfo
}

var envKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// readEnvFile reads path for a command that only reads it (check, migrate
// and the others). A symbolic link is followed, since deploy tools link one
// shared .env into each release, but it must lead to a regular file.
func readEnvFile(path string) (*envFile, error) {
	return openEnvFile(path, false)
}

// readEnvFileToReplace reads path for "sessionctl secret", which replaces
// it. A missing file is an empty envFile that write creates. Anything but a
// regular file is refused: through a symbolic link the secret would land in
// whatever file the link names, a device or a FIFO would be swapped for a
// regular file holding the secret (or block the command forever), and
// replacing a link or a device is not what its owner meant either.
func readEnvFileToReplace(path string) (*envFile, error) {
	return openEnvFile(path, true)
}

// openEnvFile reads path, refusing anything but a regular file; with
// noLink, a symbolic link too. The type is checked twice: before opening,
// to name what the file is and never open a device, and on the opened file,
// since path may change between the two. Opening never blocks on a FIFO
// (O_NONBLOCK) nor, with noLink, follows a link (O_NOFOLLOW) where the
// system has them. Any line that is not an assignment, a comment or blank is
// an error naming the line, because a value silently skipped is a setting
// silently lost.
func openEnvFile(path string, noLink bool) (*envFile, error) {
	stat, flags := os.Stat, openFlags
	if noLink {
		stat, flags = os.Lstat, openFlags|openNoFollow
	}
	f := &envFile{path: path}
	info, err := stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return f, nil
	case err != nil:
		return nil, fmt.Errorf("read env file: %w", err)
	}
	if err := regularFile(path, info); err != nil {
		return nil, err
	}
	file, err := os.OpenFile(path, os.O_RDONLY|flags, 0)
	if err != nil {
		return nil, fmt.Errorf("read env file: %w", err)
	}
	defer file.Close()
	if info, err = file.Stat(); err != nil {
		return nil, fmt.Errorf("read env file: %w", err)
	}
	if err := regularFile(path, info); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(file)
	if err != nil {
		return nil, fmt.Errorf("read env file: %w", err)
	}
	f.info = info
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

// regularFile returns nil if info is a regular file's, else an error that
// names path, says what it is and what to pass instead.
func regularFile(path string, info fs.FileInfo) error {
	mode := info.Mode()
	var kind string
	switch {
	case mode.IsRegular():
		return nil
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(path)
		if err != nil {
			return fmt.Errorf("%s is a symbolic link, which sessionctl does not write through: pass the file it leads to", path)
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		return fmt.Errorf("%s is a symbolic link to %s, which sessionctl does not write through (a link can lead to any file): pass the file itself, --env-file %s", path, target, target)
	case mode.IsDir():
		kind = "a directory"
	case mode&fs.ModeNamedPipe != 0:
		kind = "a named pipe (FIFO)"
	case mode&fs.ModeDevice != 0:
		kind = "a device"
	case mode&fs.ModeSocket != 0:
		kind = "a socket"
	default:
		kind = "a special file"
	}
	return fmt.Errorf("%s is %s, not a regular file: --env-file takes a KEY=VALUE file, or the path of one to create", path, kind)
}

// exists reports whether the file existed when it was read.
func (f *envFile) exists() bool { return f.info != nil }

// mode is the file's permission bits as read; 0600 for a new file.
func (f *envFile) mode() fs.FileMode {
	if f.info == nil {
		return 0o600
	}
	return f.info.Mode().Perm()
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

// comment returns the rest of the first comment line that starts with
// prefix, for the notes sessionctl leaves in the file for itself.
func (f *envFile) comment(prefix string) (string, bool) {
	for _, line := range f.lines {
		if rest, ok := strings.CutPrefix(strings.TrimSuffix(line, "\r"), prefix); ok {
			return rest, true
		}
	}
	return "", false
}

// setComment makes prefix+text the file's one comment line starting with
// prefix: it replaces those already there, or goes just above the last
// assignment of key (at the end when there is none), where a reader of
// that assignment sees it.
func (f *envFile) setComment(prefix, text, key string) {
	f.removeComment(prefix)
	at := len(f.lines)
	for i, line := range f.lines {
		if k, _, ok, _ := parseEnvLine(line); ok && k == key {
			at = i
		}
	}
	f.lines = slices.Insert(f.lines, at, prefix+text)
}

// removeComment removes every comment line starting with prefix.
func (f *envFile) removeComment(prefix string) {
	f.lines = slices.DeleteFunc(f.lines, func(line string) bool {
		return strings.HasPrefix(strings.TrimSuffix(line, "\r"), prefix)
	})
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

// write replaces the file atomically: it writes a temporary file in the
// same directory, syncs it, renames it over the path and syncs the
// directory. A crash leaves the old file or the new one, never half of
// either, and the rename replaces the name itself, so nothing is ever
// written into a file the path may have come to lead to since it was read.
//
// The new file has the original's owner (where files have owners) and its
// mode without any permission for group or others: it holds the key to
// every session. A looser original becomes 0600, a stricter one (0400)
// stays as it was.
func (f *envFile) write() (err error) {
	dir := filepath.Dir(f.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.path)+".tmp-*")
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("write env file %s: %w (the file is replaced by a new one written beside it, so the directory %s must be writable)", f.path, err, dir)
		}
		return fmt.Errorf("write env file %s: %w", f.path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			err = fmt.Errorf("write env file %s: %w", f.path, err)
		}
	}()
	if f.info != nil {
		keepOwner(tmp, f.info)
	}
	if err := tmp.Chmod(f.mode() & 0o600); err != nil {
		return err
	}
	text := strings.Join(f.lines, "\n")
	if text != "" {
		text += "\n"
	}
	if _, err := tmp.WriteString(text); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return err
	}
	return syncDir(dir)
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
	if !f.exists() {
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
