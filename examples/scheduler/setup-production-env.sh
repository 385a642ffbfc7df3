#!/usr/bin/env bash
# Runs the repository's setup-production-env.sh in the current directory, for
# the example app. A wrapper rather than a symbolic link, because Go module
# zips leave links out and Windows checkouts may turn links into text. To
# give your own app the script, copy the one at the repository root: this
# wrapper works only inside the repository.
exec bash "$(dirname "${BASH_SOURCE[0]}")/../../setup-production-env.sh" "$@"
