package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/smartscheduler/session"
)

// newSecret returns 256 random bits as unpadded base64url: 43 characters
// that need no quoting in any env file, shell or YAML.
func newSecret() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails: crypto/rand crashes the program rather than return weak bytes
	return base64.RawURLEncoding.EncodeToString(b)
}

// secretProblem returns why production would refuse secret ("is 12 bytes;
// production needs at least 32"), or "". The judgement is the library's own,
// so sessionctl and the app can never disagree.
func secretProblem(secret string) string {
	cfg := session.Config{Production: true, AllowMemoryStore: true, Secret: secret}
	for _, p := range configErrors(cfg.Validate()) {
		if p.Variable == "SESSION_SECRET" {
			return p.Problem
		}
	}
	return ""
}

func runSecret(_ context.Context, args []string, _ func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := newFlags("secret", "[--env-file FILE [--rotate]]", `
Prints a new SESSION_SECRET: 256 random bits, base64url-encoded.

With --env-file, writes it into FILE instead, changing no other line. FILE
must be a regular file or missing (not a symbolic link, a device or a
FIFO); it is replaced atomically by a new file with its owner and mode 0600,
or its stricter mode, since it holds the secret. A SESSION_SECRET already in FILE is kept,
unless it is too weak for production, in which case it is replaced. With
--rotate the current secret is replaced and moved to the front of
SESSION_SECRET_PREVIOUS, where it is still accepted: nobody is signed out,
and each cookie it signed is re-signed with the new secret on its next
request. A retired secret too weak for production is dropped instead, and
the command says so. The secret is never printed when it goes into a file.`)
	envFile := fs.String("env-file", "", "write SESSION_SECRET into `FILE` instead of printing it")
	rotate := fs.Bool("rotate", false, "replace the secret in the env file, keeping the old one in SESSION_SECRET_PREVIOUS")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if *rotate && *envFile == "" {
		return usageError(fs, stderr, "--rotate needs --env-file: the old secret has to go somewhere, and sessionctl never prints it")
	}
	secret := newSecret()
	if *envFile == "" {
		fmt.Fprintln(stdout, secret)
		return exitOK
	}
	f, err := readEnvFileToReplace(*envFile)
	if err != nil {
		fmt.Fprintf(stderr, "sessionctl secret: %v\n", err)
		return exitFailed
	}
	current, _ := f.lookup("SESSION_SECRET")
	var message string
	switch problem := secretProblem(current); {
	case current == "":
		f.set("SESSION_SECRET", secret)
		message = fmt.Sprintf("Wrote a new SESSION_SECRET to %s.", *envFile)
	case *rotate:
		if strings.Contains(current, ",") {
			fmt.Fprintf(stderr, "sessionctl secret: the current SESSION_SECRET in %s contains a comma, so it cannot be listed in the comma-separated SESSION_SECRET_PREVIOUS: add it there by hand, or replace it without --rotate (which signs everyone out)\n", *envFile)
			return exitFailed
		}
		previous, dropped := retiredSecrets(f, current)
		f.set("SESSION_SECRET", secret)
		if _, ok := f.lookup("SESSION_SECRET_PREVIOUS"); ok || len(previous) > 0 {
			f.set("SESSION_SECRET_PREVIOUS", strings.Join(previous, ","))
		}
		kept := "The old secret is first in SESSION_SECRET_PREVIOUS"
		if problem != "" {
			kept = "The old secret was not kept (see above)"
		}
		message = dropped + fmt.Sprintf(`Rotated SESSION_SECRET in %s. %s
(%d retired secret(s) accepted), so nobody is signed out: cookies they signed are
re-signed with the new secret on their next request.
Deploy the file to every instance, then restart them. Once SESSION_LIFETIME
(14 days by default) has passed, remove the retired secrets from
SESSION_SECRET_PREVIOUS.`, *envFile, kept, len(previous))
	case problem != "":
		f.set("SESSION_SECRET", secret)
		message = fmt.Sprintf("Replaced the SESSION_SECRET in %s, which %s; sessions it signed end, so their users sign in again.", *envFile, problem)
	default:
		fmt.Fprintf(stdout, "%s already sets a SESSION_SECRET; left it unchanged.\nTo replace it without signing anyone out: sessionctl secret --env-file %s --rotate\n", *envFile, *envFile)
		warnReadable(stdout, f)
		return exitOK
	}
	if err := f.write(); err != nil {
		fmt.Fprintf(stderr, "sessionctl secret: %v\n", err)
		return exitFailed
	}
	fmt.Fprintln(stdout, message)
	if old := f.mode(); old&0o077 != 0 {
		fmt.Fprintf(stdout, "%s was mode %04o, open to other users; it is now %04o, since it holds the key to every session.\nIf the app runs as another user, make that user the file's owner (chown) rather than opening the mode again.\n", f.path, old, old&0o600)
	}
	return exitOK
}

// retiredSecrets returns what SESSION_SECRET_PREVIOUS becomes when current
// retires: current first, then the entries already there, without
// duplicates, keeping only secrets production accepts. A weak retired
// secret would be accepted as if it signed the cookie, and would stop the
// app from starting in production, so it is dropped and the returned text
// says which (by position, never by value) and why.
func retiredSecrets(f *envFile, current string) (kept []string, dropped string) {
	var b strings.Builder
	consider := func(s, name string) {
		switch problem := secretProblem(s); {
		case s == "" || slices.Contains(kept, s):
		case problem != "":
			fmt.Fprintf(&b, "The %s %s; not kept in SESSION_SECRET_PREVIOUS: cookies it signed end.\n", name, problem)
		default:
			kept = append(kept, s)
		}
	}
	consider(current, "old SESSION_SECRET")
	if list, ok := f.lookup("SESSION_SECRET_PREVIOUS"); ok && strings.TrimSpace(list) != "" {
		i := 0
		for s := range strings.SplitSeq(list, ",") {
			i++
			consider(strings.TrimSpace(s), fmt.Sprintf("SESSION_SECRET_PREVIOUS entry %d", i))
		}
	}
	return kept, b.String()
}

// warnReadable points out an env file other users may read, when the
// command leaves it alone: it holds the key to every session.
func warnReadable(w io.Writer, f *envFile) {
	if mode := f.mode(); mode&0o077 != 0 {
		fmt.Fprintf(w, "Warning: %s is readable by other users (mode %04o): run \"chmod 600 %s\".\n", f.path, mode, f.path)
	}
}
