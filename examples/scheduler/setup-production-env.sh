#!/usr/bin/env bash
# Prepares .env in the current directory for running the app in production:
# a new SESSION_SECRET (256 random bits; the file is created with mode 0600),
# NODE_ENV=production and USE_POSTGRES=true. Every line already in .env is
# kept, and so is a good SESSION_SECRET, so running it again is harmless.
#
#   bash ./setup-production-env.sh            # first time, or to fill gaps
#   bash ./setup-production-env.sh --rotate   # new secret; the old one stays
#                                             # accepted, so nobody is signed out
#
# It is a thin wrapper over "sessionctl secret": it uses sessionctl from
# PATH, or builds it from the repository this script belongs to.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
env_file=.env

# shellcheck source=sessionctl.sh
source "$here/sessionctl.sh"

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
    --rotate) secret_args+=(--rotate) ;;
    -h | --help)
      sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    *)
      echo "setup-production-env.sh: unknown argument $arg (the only option is --rotate)" >&2
      exit 2
      ;;
  esac
done

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
