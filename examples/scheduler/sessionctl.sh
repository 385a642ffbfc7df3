# Sourced by the two setup scripts beside it: runs sessionctl for them.
# shellcheck shell=bash

# run_sessionctl ARGS...: sessionctl from PATH if installed, else built from
# the repository at $here/../.. (what "go run" does, but run here, so .env means ./.env).
run_sessionctl() {
  if command -v sessionctl >/dev/null 2>&1; then
    sessionctl "$@"
    return
  fi
  if ! command -v go >/dev/null 2>&1; then
    echo "sessionctl is not installed and Go is not available to build it: go install github.com/smartscheduler/session/cmd/sessionctl@latest" >&2
    return 1
  fi
  local tmp status=0
  tmp="$(mktemp -d)"
  if ! (cd "$here/../.." && go build -o "$tmp/sessionctl" ./cmd/sessionctl); then
    rm -rf "$tmp"
    return 1
  fi
  "$tmp/sessionctl" "$@" || status=$?
  rm -rf "$tmp"
  return "$status"
}
