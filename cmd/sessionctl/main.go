// Command sessionctl sets up, checks and maintains the sessions of an app
// built on github.com/smartscheduler/session. It reads the same environment
// variables as the library (NODE_ENV, USE_POSTGRES, DATABASE_URL,
// SESSION_SECRET, SESSION_*), through the library's own configuration
// loading, so it judges a configuration exactly as the app will.
//
//	go install github.com/smartscheduler/session/cmd/sessionctl@latest
//
//	sessionctl secret [--env-file FILE [--rotate | --stage | --promote]]
//	                                                 make (or rotate) SESSION_SECRET
//	sessionctl check [--env-file FILE] [--json]      the production checklist
//	sessionctl migrate [--status] [--json]           create or upgrade the session table
//	sessionctl prune                                 delete expired sessions now
//	sessionctl stats [--json]                        count sessions
//	sessionctl revoke --user ID                      sign a user out everywhere
//	sessionctl express import|prune                  move express-session's sessions over
//
// Exit status: 0 on success, 1 when a check or an operation failed, 2 on a
// usage error. Every subcommand takes --help. Nothing sessionctl prints
// contains a secret or a database password.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int
}

// commands lists the subcommands in the order usage shows them.
var commands = []command{
	{"secret", "print a new SESSION_SECRET, or write or rotate it in an env file", runSecret},
	{"check", "check the production configuration: environment, database, table, secret, cookie", runCheck},
	{"migrate", "create or upgrade the session table (--status: list migrations)", runMigrate},
	{"prune", "delete expired sessions now and print how many", runPrune},
	{"stats", "count live, expired and signed-in sessions and the table size", runStats},
	{"revoke", "end every session of one user (sign out everywhere)", runRevoke},
	{"express", "move express-session's sessions over: import, prune", runExpress},
}

// run is the whole program with its inputs made explicit, so tests call it
// with a fake environment and capture its output. It returns the exit
// status.
func run(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 && name == "help" {
			// "sessionctl help check" is "sessionctl check --help".
			return run(ctx, []string{args[1], "--help"}, env, stdout, stderr)
		}
		usage(stdout)
		return exitOK
	}
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == name })
	if i < 0 {
		fmt.Fprintf(stderr, "sessionctl: unknown command %q\n\n", name)
		usage(stderr)
		return exitUsage
	}
	return commands[i].run(ctx, args[1:], env, stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprint(w, "Usage: sessionctl <command> [flags]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Every command reads the app's environment (NODE_ENV, USE_POSTGRES,
DATABASE_URL, SESSION_SECRET, SESSION_*) and takes --env-file FILE to read
a KEY=VALUE file as well; variables already in the environment win, as with
dotenv. Run "sessionctl <command> --help" for its flags.

Exit status: 0 success, 1 a check or operation failed, 2 usage error.
`)
}

// newFlags returns a FlagSet for one subcommand whose usage text is
// synopsis and description followed by the flags.
func newFlags(name, synopsis, description string) *flag.FlagSet {
	fs := flag.NewFlagSet("sessionctl "+name, flag.ContinueOnError)
	// parse prints errors and help itself, to the right stream.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: sessionctl %s %s\n\n%s\n", name, synopsis, strings.TrimSpace(description))
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprint(w, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parse parses a subcommand's flags. It returns the exit status and false
// when the command must stop: 0 after --help (usage on stdout), 2 after a
// bad flag or a stray argument (the error and usage on stderr).
func parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (int, bool) {
	err := fs.Parse(args)
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case err == nil:
		return exitOK, true
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return exitOK, false
	default:
		fmt.Fprintf(stderr, "%s: %v\n\n", fs.Name(), err)
		fs.SetOutput(stderr)
		fs.Usage()
		return exitUsage, false
	}
}

// usageError reports a flag combination parse cannot catch.
func usageError(fs *flag.FlagSet, stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "%s: %s\n\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.SetOutput(stderr)
	fs.Usage()
	return exitUsage
}
