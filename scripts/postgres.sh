#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on loopback for tests and benchmarks, one per checkout.
#   scripts/postgres.sh          start (or reuse) it; prints the DATABASE_URL on its last line
#   scripts/postgres.sh running  exit 0 when this checkout's cluster is up
#   scripts/postgres.sh stop     stop it
# Installs Debian's postgresql when missing. When CARELINE_PG_PORT (default 54329) is
# taken, by another checkout's cluster or anything else, the next free port is used.
set -euo pipefail
ACTION="${1:-start}"
PORT="${CARELINE_PG_PORT:-54329}"
if [ "$(id -u)" = 0 ]; then
  # The server runs as the postgres user, who may not be able to enter a checkout under a
  # private directory (mktemp -d, /root): keep the cluster in a world-traversable place.
  DIR="${CARELINE_PG_DIR:-/var/tmp/careline-pgdata-$(printf %s "$PWD" | md5sum | cut -c1-12)}"
else
  DIR="${CARELINE_PG_DIR:-$PWD/.pgdata}"
fi

find_bin() {
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  return 1
}

BIN="$(find_bin || true)"
if [ "$ACTION" != start ] && { [ -z "$BIN" ] || [ ! -f "$DIR/PG_VERSION" ]; }; then
  [ "$ACTION" = stop ]; exit  # no cluster here: not running, nothing to stop
fi
if [ -z "$BIN" ]; then
  echo "Installing PostgreSQL from Debian's packages…" >&2
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >&2
  $SUDO apt-get install -y -qq postgresql >&2
  BIN="$(find_bin)"
fi

# PostgreSQL refuses to run as root: use the postgres system user when we are root.
AS=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home "$DIR" postgres
  AS=(runuser -u postgres --)
fi
# From /, since the postgres user may not be allowed into the current directory.
run() { (cd / && "${AS[@]}" "$@"); }

if [ "$ACTION" = running ]; then
  run "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; exit
fi
if [ "$ACTION" = stop ]; then
  if run "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; then
    run "$BIN/pg_ctl" -D "$DIR" -m fast -w stop >/dev/null
  fi
  exit 0
fi

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null || [ -e "/tmp/.s.PGSQL.$1" ]; }

if [ ! -f "$DIR/PG_VERSION" ]; then
  mkdir -p "$DIR"
  [ "$(id -u)" = 0 ] && chown postgres "$DIR"
  run "$BIN/initdb" -D "$DIR" -U careline --auth=trust -E UTF8 >/dev/null
fi
# fsync and friends off: a throwaway cluster. shared_buffers as a server of its own would
# have it (the default 128 MB is for small machines): benchmarks at 10^6 rows need it.
if ! run "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; then
  while port_taken "$PORT"; do PORT=$((PORT + 1)); done
  run "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w \
    -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=${CARELINE_PG_SHARED_BUFFERS:-1GB}" \
    start >/dev/null
fi
# A cluster left running by an earlier run keeps the port it was started with.
PORT="$(sed -n 4p "$DIR/postmaster.pid")"
run "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U careline -d postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname='careline'" | grep -q 1 || \
  run "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U careline careline
echo "postgres://careline@127.0.0.1:$PORT/careline"
