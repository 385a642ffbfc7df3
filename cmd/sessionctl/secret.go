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
	fs := newFlags("secret", "[--env-file FILE [--rotate | --stage | --promote]]", `
Prints a new SESSION_SECRET: 256 random bits, base64url-encoded.

With --env-file, writes it into FILE instead, changing no other line. FILE
must be a regular file or missing (not a symbolic link, a device or a
FIFO); it is replaced atomically by a new file with its owner and mode 0600,
or its stricter mode, since it holds the secret. A SESSION_SECRET already in FILE is kept,
unless it is too weak for production, in which case it is replaced.

Rotating the secret signs nobody out: SESSION_SECRET_PREVIOUS lists
secrets that are still accepted, never used to sign, and a cookie one of
them signed is re-signed with SESSION_SECRET on its next request.

--stage and --promote rotate in two steps, for several instances deployed
one after another. --stage writes a new secret at the front of
SESSION_SECRET_PREVIOUS: deploy the file everywhere, and every instance
accepts it while all still sign with the old one. --promote then makes it
SESSION_SECRET and moves the old one to the front of
SESSION_SECRET_PREVIOUS: deploy again, and old and new instances accept
each other's cookies throughout.

--rotate does both at once: for a single instance, or when every instance
restarts together. During a rolling deploy it signs out users who move
from a new instance to an old one, which does not know the new secret.

A retired secret too weak for production is dropped instead of kept, and
the command says so; while sessions move from express-session
(SESSION_EXPRESS_TABLE set in FILE) it goes to SESSION_EXPRESS_SECRET
instead, where it verifies express-session's cookie only. The secret is never printed when it goes into a
file.`)
	envFile := fs.String("env-file", "", "write SESSION_SECRET into `FILE` instead of printing it")
	rotate := fs.Bool("rotate", false, "replace the secret in the env file at once, keeping the old one in SESSION_SECRET_PREVIOUS (one instance)")
	stage := fs.Bool("stage", false, "rolling rotation, step 1: add a new secret at the front of SESSION_SECRET_PREVIOUS, accepted but not yet signing")
	promote := fs.Bool("promote", false, "rolling rotation, step 2: make the staged secret SESSION_SECRET, keeping the old one in SESSION_SECRET_PREVIOUS")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	var modes []string
	for _, m := range []struct {
		flag string
		set  bool
	}{{"--rotate", *rotate}, {"--stage", *stage}, {"--promote", *promote}} {
		if m.set {
			modes = append(modes, m.flag)
		}
	}
	switch {
	case len(modes) > 1:
		return usageError(fs, stderr, "--rotate, --stage and --promote are alternatives: use one")
	case len(modes) == 1 && *envFile == "":
		return usageError(fs, stderr, "%s needs --env-file: the old secret has to go somewhere, and sessionctl never prints it", modes[0])
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
	case *stage:
		message, err = stageSecret(f, current, secret)
	case *promote:
		message, err = promoteSecret(f, current)
	case current == "":
		f.set("SESSION_SECRET", secret)
		message = fmt.Sprintf("Wrote a new SESSION_SECRET to %s.", *envFile)
	case *rotate:
		message, err = rotateSecret(f, current, secret, problem)
	case problem != "":
		f.set("SESSION_SECRET", secret)
		message = fmt.Sprintf("Replaced the SESSION_SECRET in %s, which %s; sessions it signed end, so their users sign in again.", *envFile, problem)
	default:
		fmt.Fprintf(stdout, "%s already sets a SESSION_SECRET; left it unchanged.\nTo replace it without signing anyone out: sessionctl secret --env-file %s --stage, then --promote (or --rotate for a single instance)\n", *envFile, *envFile)
		warnReadable(stdout, f)
		return exitOK
	}
	if err == nil {
		err = f.write()
	}
	if err != nil {
		fmt.Fprintf(stderr, "sessionctl secret: %v\n", err)
		return exitFailed
	}
	fmt.Fprintln(stdout, message)
	if old := f.mode(); old&0o077 != 0 {
		fmt.Fprintf(stdout, "%s was mode %04o, open to other users; it is now %04o, since it holds the key to every session.\nIf the app runs as another user, make that user the file's owner (chown) rather than opening the mode again.\n", f.path, old, old&0o600)
	}
	return exitOK
}

// stagedNote starts the comment line --stage leaves in the env file, with
// the staged secret's fingerprint, so that --promote promotes that secret
// and nothing else: promoting twice, or without staging, would make a
// retired secret sign again.
const stagedNote = "# sessionctl: staged secret "

// staged returns the fingerprint of the secret --stage left in f.
func staged(f *envFile) (string, bool) {
	rest, ok := f.comment(stagedNote)
	fp, _, _ := strings.Cut(rest, " ")
	return fp, ok && fp != ""
}

// previousList returns the entries of SESSION_SECRET_PREVIOUS in f, in
// order, trimmed.
func previousList(f *envFile) []string {
	return envList(f, "SESSION_SECRET_PREVIOUS")
}

// envList returns the entries of the comma-separated list name sets in f,
// in order, trimmed.
func envList(f *envFile, name string) []string {
	list, _ := f.lookup(name)
	var entries []string
	if strings.TrimSpace(list) != "" {
		for s := range strings.SplitSeq(list, ",") {
			entries = append(entries, strings.TrimSpace(s))
		}
	}
	return entries
}

// rotateSecret makes secret SESSION_SECRET at once, retiring current.
func rotateSecret(f *envFile, current, secret, problem string) (string, error) {
	if strings.Contains(current, ",") {
		return "", fmt.Errorf("the current SESSION_SECRET in %s contains a comma, so it cannot be listed in the comma-separated SESSION_SECRET_PREVIOUS: add it there by hand, or replace it without --rotate (which signs everyone out)", f.path)
	}
	previous, dropped := retiredSecrets(f, secret, current, 0)
	f.set("SESSION_SECRET", secret)
	if _, ok := f.lookup("SESSION_SECRET_PREVIOUS"); ok || len(previous) > 0 {
		f.set("SESSION_SECRET_PREVIOUS", strings.Join(previous, ","))
	}
	if _, ok := staged(f); ok {
		f.removeComment(stagedNote)
		dropped += "The staged secret stays accepted in SESSION_SECRET_PREVIOUS, but is no longer staged: --rotate replaced the secret instead.\n"
	}
	kept := "The old secret is first in SESSION_SECRET_PREVIOUS"
	if problem != "" {
		kept = "The old secret was not kept (see above)"
	}
	return dropped + fmt.Sprintf(`Rotated SESSION_SECRET in %s. %s
(%d retired secret(s) accepted), so nobody is signed out: cookies they signed are
re-signed with the new secret on their next request.
Deploy the file to every instance, then restart them all at once: an instance
still running with the old file does not know the new secret, so a user who
moves from a new instance to an old one is signed out. For a rolling deploy,
rotate in two steps instead: --stage, then --promote.
Once SESSION_LIFETIME (14 days by default) has passed, remove the retired
secrets from SESSION_SECRET_PREVIOUS.`, f.path, kept, len(previous)), nil
}

// stageSecret is step 1 of a rolling rotation: secret goes to the front of
// SESSION_SECRET_PREVIOUS, accepted everywhere the file is deployed, while
// current still signs every cookie.
func stageSecret(f *envFile, current, secret string) (string, error) {
	if current == "" {
		return "", fmt.Errorf("%s has no SESSION_SECRET to stage a successor for: write one with \"sessionctl secret --env-file %s\"", f.path, f.path)
	}
	if fp, ok := staged(f); ok {
		return "", fmt.Errorf("%s already stages a secret (fingerprint %s): once the file runs on every instance, promote it with \"sessionctl secret --env-file %s --promote\"", f.path, fp, f.path)
	}
	previous, dropped := retiredSecrets(f, current, "", 0)
	f.set("SESSION_SECRET_PREVIOUS", strings.Join(append([]string{secret}, previous...), ","))
	f.setComment(stagedNote, fingerprint(secret)+fmt.Sprintf(" is first in SESSION_SECRET_PREVIOUS; once every instance runs with this file: sessionctl secret --env-file %s --promote", f.path), "SESSION_SECRET_PREVIOUS")
	return dropped + fmt.Sprintf(`Staged a new secret (fingerprint %s) at the front of SESSION_SECRET_PREVIOUS in %s.
Step 1 of 2: deploy the file to every instance, one after another if you like.
Every instance keeps signing with SESSION_SECRET, and those running the new
file also accept the staged secret, so nobody is signed out.
Step 2, once every instance runs with this file:
  sessionctl secret --env-file %s --promote`, fingerprint(secret), f.path, f.path), nil
}

// promoteSecret is step 2 of a rolling rotation: the staged secret signs,
// and current moves to the front of SESSION_SECRET_PREVIOUS. Instances
// still on step 1 accept the staged secret, and the promoted ones accept
// current, so cookies cross between them either way.
func promoteSecret(f *envFile, current string) (string, error) {
	fp, ok := staged(f)
	entries := previousList(f)
	if !ok || len(entries) == 0 || fingerprint(entries[0]) != fp {
		return "", fmt.Errorf("%s has no staged secret at the front of SESSION_SECRET_PREVIOUS to promote (promoting a retired secret would make it sign again): stage one with \"sessionctl secret --env-file %s --stage\" and deploy the file to every instance first", f.path, f.path)
	}
	if strings.Contains(current, ",") {
		return "", fmt.Errorf("the current SESSION_SECRET in %s contains a comma, so it cannot be listed in the comma-separated SESSION_SECRET_PREVIOUS: move it there by hand", f.path)
	}
	next := entries[0]
	previous, dropped := retiredSecrets(f, next, current, 1)
	f.set("SESSION_SECRET", next)
	f.set("SESSION_SECRET_PREVIOUS", strings.Join(previous, ","))
	f.removeComment(stagedNote)
	kept := "the old one is first in SESSION_SECRET_PREVIOUS"
	if secretProblem(current) != "" {
		kept = "the old one was not kept (see above)"
	}
	return dropped + fmt.Sprintf(`Promoted the staged secret (fingerprint %s) to SESSION_SECRET in %s; %s
(%d retired secret(s) accepted).
Step 2 of 2: deploy the file to every instance, one after another if you like:
instances still on step 1 accept the new secret's cookies, and promoted ones
accept the old secret's, so nobody is signed out.
Once SESSION_LIFETIME (14 days by default) has passed, remove the retired
secrets from SESSION_SECRET_PREVIOUS.`, fp, f.path, kept, len(previous)), nil
}

// retiredSecrets returns what SESSION_SECRET_PREVIOUS becomes: retiring
// first (unless empty), then the entries already there from index from
// on, without duplicates or signing (the secret that will sign), keeping
// only secrets production accepts. A weak retired secret would be accepted
// as if it signed the cookie, and would stop the app from starting in
// production, so it is dropped and the returned text says which (by
// position, never by value) and why. While sessions move from
// express-session (SESSION_EXPRESS_TABLE set in f), a weak secret goes to
// SESSION_EXPRESS_SECRET instead, where it verifies express-session's
// cookie only: it is the Node app's, and dropping it would sign its users
// out.
func retiredSecrets(f *envFile, signing, retiring string, from int) (kept []string, dropped string) {
	var b strings.Builder
	table, _ := f.lookup("SESSION_EXPRESS_TABLE")
	moving := strings.TrimSpace(table) != ""
	expressList := envList(f, "SESSION_EXPRESS_SECRET")
	consider := func(s, name string) {
		switch problem := secretProblem(s); {
		case s == "" || s == signing || slices.Contains(kept, s):
		case problem != "" && moving && !strings.Contains(s, ","):
			if !slices.Contains(expressList, s) {
				expressList = append(expressList, s)
				f.set("SESSION_EXPRESS_SECRET", strings.Join(expressList, ","))
			}
			fmt.Fprintf(&b, "The %s %s; kept in SESSION_EXPRESS_SECRET instead of SESSION_SECRET_PREVIOUS, where it verifies express-session's cookie only (SESSION_EXPRESS_TABLE is set): remove it there once the move is done.\n", name, problem)
		case problem != "":
			fmt.Fprintf(&b, "The %s %s; not kept in SESSION_SECRET_PREVIOUS: cookies it signed end.\n", name, problem)
		default:
			kept = append(kept, s)
		}
	}
	consider(retiring, "old SESSION_SECRET")
	for i, s := range previousList(f) {
		if i >= from {
			consider(s, fmt.Sprintf("SESSION_SECRET_PREVIOUS entry %d", i+1))
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
