#!/usr/bin/env bash
# Prepares .env in the current directory (run it from the app's root) for
# running the app in production: a new SESSION_SECRET (256 random bits),
# NODE_ENV=production and USE_POSTGRES=true. Every line already in .env is
# kept, and so is a good SESSION_SECRET, so running it again is harmless.
# .env gets mode 0600, and the secret is never printed.
#
#   bash ./setup-production-env.sh            # first time, or to fill gaps
#   bash ./setup-production-env.sh --stage    # rolling rotation, step 1: a new secret,
#                                             # accepted but not yet signing; deploy
#   bash ./setup-production-env.sh --promote  # step 2: the new secret signs, the old
#                                             # one stays accepted; deploy again
#   bash ./setup-production-env.sh --rotate   # both steps at once, for one instance
#
# Rotating signs nobody out; with several instances, use --stage and
# --promote, each followed by a deploy (docs/operations.md).
#
# Inside a git work tree it writes nothing unless git ignores .env, so the
# secret cannot be committed: add .env to .gitignore first.
#
# It runs "sessionctl secret", found in this order: sessionctl on the PATH;
# else, when the current directory is in a Go module that requires
# github.com/smartscheduler/session, sessionctl built from the version that
# module's go.mod names; else it stops and says how to install sessionctl.
# So the script can be copied into an app's own directory as it is.
set -euo pipefail

env_file=.env

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

# refuse_if_committable: stops before anything is written if git could
# commit .env, which is about to hold the production secret.
refuse_if_committable() {
  if ! command -v git >/dev/null 2>&1 || [ "$(git rev-parse --is-inside-work-tree 2>/dev/null)" != true ]; then
    return
  fi
  if git ls-files --error-unmatch -- "$env_file" >/dev/null 2>&1; then
    cat >&2 <<EOF
setup-production-env.sh: $env_file is tracked by git, so the production secret would be committed with it. Nothing was written.
Stop tracking it and ignore it, then run this again:
    git rm --cached $env_file && echo $env_file >>.gitignore && git commit -m "Stop tracking $env_file" -- $env_file .gitignore
Any secret it already held is in the history: replace it (bash ./setup-production-env.sh --stage, deploy, --promote, deploy keeps users signed in).
EOF
    exit 1
  fi
  if ! git check-ignore -q -- "$env_file"; then
    cat >&2 <<EOF
setup-production-env.sh: git does not ignore $env_file, so the production secret could be committed. Nothing was written.
Add it to .gitignore, then run this again:
    echo $env_file >>.gitignore
EOF
    exit 1
  fi
}

# has_key KEY: whether .env assigns KEY (with or without "export ").
has_key() {
  grep -Eq "^[[:space:]]*(export[[:space:]]+)?$1[[:space:]]*=" "$env_file"
}

# set_if_missing KEY VALUE: appends KEY=VALUE unless .env assigns KEY.
set_if_missing() {
  if has_key "$1"; then
    echo "$env_file already sets $1; left it as it is."
    return
  fi
  # Append on a line of its own even if the file lacks a final newline.
  if [ -s "$env_file" ] && [ -n "$(tail -c 1 "$env_file")" ]; then
    echo >>"$env_file"
  fi
  echo "$1=$2" >>"$env_file"
  echo "Set $1=$2 in $env_file."
}

secret_args=(secret --env-file "$env_file")
for arg in "$@"; do
  case "$arg" in
    --rotate | --stage | --promote) secret_args+=("$arg") ;;
    -h | --help)
      awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    *)
      echo "setup-production-env.sh: unknown argument $arg (the options are --stage, --promote and --rotate; --help explains)" >&2
      exit 2
      ;;
  esac
done

refuse_if_committable
run_sessionctl "${secret_args[@]}"
set_if_missing NODE_ENV production
set_if_missing USE_POSTGRES true

echo
echo "Next steps:"
step=1
if ! has_key DATABASE_URL; then
  echo "  $step. Add DATABASE_URL=postgres://user:password@host:5432/database to $env_file."
  step=$((step + 1))
fi
echo "  $step. Give the app this environment: systemd EnvironmentFile=, docker run --env-file $env_file,"
echo "     or 'set -a; . ./$env_file; set +a' before starting it. Every instance needs the same file."
echo "  $((step + 1)). Serve the site over HTTPS: in production the session cookie is Secure."
echo "  $((step + 2)). Check the result: bash ./check-session-config.sh"
echo "  $((step + 3)). Restart the app."
