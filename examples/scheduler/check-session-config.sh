#!/usr/bin/env bash
# Checks the session configuration against the production checklist:
# NODE_ENV, USE_POSTGRES, DATABASE_URL, the database (reachable, its clock),
# the session table, SESSION_SECRET and its predecessors, and the cookie.
# Reads the environment and, if present, .env in the current directory.
# One line per check (PASS, WARN, FAIL, SKIP) with the fix for each problem;
# exits 1 if any check fails.
#
#   bash ./check-session-config.sh            # run it where the app runs
#   bash ./check-session-config.sh --json     # any sessionctl check flag
#
# It is a thin wrapper over "sessionctl check": it uses sessionctl from
# PATH, or builds it from the repository this script belongs to.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# shellcheck source=sessionctl.sh
source "$here/sessionctl.sh"

args=(check)
if [ -f .env ]; then
  args+=(--env-file .env)
fi
status=0
run_sessionctl "${args[@]}" "$@" || status=$?
exit "$status"
