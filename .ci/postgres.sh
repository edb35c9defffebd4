#!/usr/bin/env bash
# The PostgreSQL backend (feature `postgres`) against a real, throwaway server: the tests start
# their own (initdb into a temporary directory, as the `postgres` OS user, 127.0.0.1 on a free
# port) and remove it afterwards. Only the server binaries must be installed; with CI=true the
# tests fail, rather than skip, when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

have_server() {
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1
}

if ! have_server; then
  echo "PostgreSQL server binaries missing: installing the Debian package postgresql (~60 s)"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
fi

# The tests drive the pg_holder example as a separate lock-holding process; with `cli` they also
# run `onlyone run/status --backend postgres`.
cargo build --features postgres --example pg_holder
cargo test --features postgres,cli --lib --test postgres
cargo test --features postgres --doc
