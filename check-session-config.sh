#!/usr/bin/env bash
# Checks the session configuration against the production checklist:
# NODE_ENV, USE_POSTGRES, DATABASE_URL, the database (reachable, its clock),
# the session table, SESSION_SECRET and its predecessors, and the cookie.
# Reads the environment and, if present, .env in the current directory (run
# it where the app runs, from the app's root). One line per check (PASS,
# WARN, FAIL, SKIP) with the fix for each problem; exits 1 if any check
# fails, 2 on a usage error. It changes nothing.
#
#   bash ./check-session-config.sh            # run it where the app runs
#   bash ./check-session-config.sh --json     # any sessionctl check flag
#
# It runs "sessionctl check", found in this order: sessionctl on the PATH;
# else, when the current directory is in a Go module that requires
# github.com/smartscheduler/session, sessionctl built from the version that
# module's go.mod names; else it stops and says how to install sessionctl.
# So the script can be copied into an app's own directory as it is.
set -euo pipefail

# --- run_sessionctl: the same in setup-production-env.sh and check-session-config.sh
# run_sessionctl ARGS...: runs sessionctl from the PATH; else, in a Go module
# that requires github.com/smartscheduler/session (or is it), the version
# its go.mod names, built with "go build" rather than "go run", which would
# turn every exit status into 1; else says how to install sessionctl.
run_sessionctl() {
  if command -v sessionctl >/dev/null 2>&1; then
    sessionctl "$@"
    return
  fi
  local module=github.com/smartscheduler/session why status=0 bin="Go's bin directory (go env GOBIN, else GOPATH/bin)"
  if ! command -v go >/dev/null 2>&1; then
    why="Go is not installed either (sessionctl needs Go 1.26 or later to build)"
  elif ! why="$(go list -m "$module" 2>&1)"; then
    why="and this directory is not in a Go module that requires $module (go list -m: ${why%%$'\n'*})"
  else
    echo "sessionctl is not on the PATH; building it from $module as $(go env GOMOD) pins it." >&2
    run_sessionctl_dir="$(mktemp -d)"
    trap 'rm -rf "$run_sessionctl_dir"' EXIT
    go build -o "$run_sessionctl_dir/sessionctl" "$module/cmd/sessionctl" || return 1
    "$run_sessionctl_dir/sessionctl" "$@" || status=$?
    return "$status"
  fi
  if command -v go >/dev/null 2>&1; then
    bin="$(go env GOBIN)"
    bin="${bin:-$(go env GOPATH)/bin}"
  fi
  cat >&2 <<EOF
sessionctl is not on the PATH, $why.
Install it:
    go install $module/cmd/sessionctl@latest
which puts it in $bin, a directory the PATH must include;
or run this script in your app's directory, whose go.mod requires $module.
EOF
  return 1
}
# --- end run_sessionctl

for arg in "$@"; do
  case "$arg" in
    -h | --help)
      awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}"
      echo
      echo "The flags of sessionctl check:"
      ;;
  esac
done

args=(check)
if [ -f .env ]; then
  args+=(--env-file .env)
fi
status=0
run_sessionctl "${args[@]}" "$@" || status=$?
exit "$status"
