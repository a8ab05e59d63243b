#!/usr/bin/env bash
# A throw-away PostgreSQL 15 server for the tests (Debian's binaries, no system cluster touched):
#   scripts/postgres_test_server.sh start DIR   # initdb into DIR, start on a free port on
#                                               # 127.0.0.1, create database modeldock_test, print
#                                               # "export MODELDOCK_TEST_PG_URL=postgresql://..."
#                                               # (also written to DIR/url)
#   scripts/postgres_test_server.sh stop DIR    # stop it and remove DIR
#   scripts/postgres_test_server.sh restart DIR SECONDS
#                                               # stop it (fast), stay down SECONDS, start it
#                                               # again on the same port (fault tests)
# Usage: eval "$(scripts/postgres_test_server.sh start /tmp/pg)"; ctest ...; ... stop /tmp/pg
# initdb refuses to run as root: as root, the server runs as the `postgres` system user and DIR
# is handed to it. Trust authentication, loopback only, fsync off: a test fixture, not a server.
set -euo pipefail
PG_BIN="${MODELDOCK_PG_BIN:-/usr/lib/postgresql/15/bin}"
action="${1:-}"
dir="${2:-}"
if [[ -z "$action" || -z "$dir" ]]; then
  echo "usage: $0 start|stop|restart DIR [SECONDS]" >&2
  exit 2
fi

as_server_user() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_ctl start of DIR's cluster on port $2.
start_on_port() {
  as_server_user "$PG_BIN/pg_ctl" -D "$1/data" -l "$1/server.log" -w -t 60 \
    -o "-p $2 -k $1/socket -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null
}

case "$action" in
  start)
    if [[ ! -x "$PG_BIN/initdb" ]]; then
      echo "postgres_test_server: $PG_BIN/initdb not found (Debian package postgresql-15)" >&2
      exit 1
    fi
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if [[ $(id -u) -eq 0 ]]; then chown postgres: "$dir"; fi
    as_server_user "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
      >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    as_server_user mkdir -p "$dir/socket"
    # A free port: the kernel picks one; another process could take it before the server
    # does, so try a few times.
    for attempt in 1 2 3 4 5; do
      port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
      if start_on_port "$dir" "$port"; then
        echo "$port" >"$dir/port"
        break
      fi
      if [[ $attempt -eq 5 ]]; then cat "$dir/server.log" >&2; exit 1; fi
    done
    "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres modeldock_test
    url="postgresql://postgres@127.0.0.1:$port/modeldock_test"
    echo "$url" >"$dir/url"
    echo "postgres_test_server: PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on $url (data in $dir)" >&2
    echo "export MODELDOCK_TEST_PG_URL=$url"
    ;;
  restart)
    [[ -f "$dir/port" ]] || { echo "postgres_test_server: no server started in $dir" >&2; exit 1; }
    as_server_user "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    sleep "${3:-1}"
    start_on_port "$dir" "$(cat "$dir/port")" || { tail -20 "$dir/server.log" >&2; exit 1; }
    ;;
  stop)
    if [[ -d "$dir/data" ]]; then
      as_server_user "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start|stop|restart DIR [SECONDS]" >&2
    exit 2
    ;;
esac
