#!/bin/sh
# First start of docker/postgres.Dockerfile's server: initdb into the empty $PGDATA with the
# superuser password from POSTGRES_PASSWORD, then a role POSTGRES_USER owning database
# POSTGRES_DB; every later start serves the existing cluster. Runs as the postgres user.
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD (compose.yaml: the .env file or the environment)}"
POSTGRES_USER="${POSTGRES_USER:-modeldock}"
POSTGRES_DB="${POSTGRES_DB:-modeldock}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb -D "$PGDATA" -U postgres --pwfile="$pwfile" -A scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  {
    echo "listen_addresses = '*'"
    echo "max_connections = 200"
  } >>"$PGDATA/postgresql.conf"
  # Local socket: peer (the postgres user of this container); TCP: passwords only.
  cat >"$PGDATA/pg_hba.conf" <<HBA
local all all peer
host all all 0.0.0.0/0 scram-sha-256
host all all ::/0 scram-sha-256
HBA
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  psql -v ON_ERROR_STOP=1 -q -U postgres -d postgres \
    -v user="$POSTGRES_USER" -v db="$POSTGRES_DB" -v pw="$POSTGRES_PASSWORD" <<'SQL'
CREATE ROLE :"user" LOGIN PASSWORD :'pw';
CREATE DATABASE :"db" OWNER :"user";
SQL
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "postgres-entrypoint: initialised $PGDATA (database $POSTGRES_DB, role $POSTGRES_USER)"
fi
exec postgres -D "$PGDATA"
