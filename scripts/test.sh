#!/usr/bin/env bash
# Everything `make test` needs beyond the virtualenv: Debian's Chromium, a reachable
# PostgreSQL and Redis (started when installed but stopped, installed when absent),
# then lint, format check, type check, and the whole suite on SQLite and on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
PG_URL=${CRM_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/crm_chat}
REDIS_URL_TEST=${CRM_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ ! -x /usr/bin/chromium ]; then
  echo "test: installing Debian chromium"; apt_install chromium fonts-dejavu-core fonts-noto-color-emoji
fi

if ! port_open 5432; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "test: installing PostgreSQL"; apt_install postgresql
  fi
  echo "test: starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do port_open 5432 && break; sleep 1; done
fi
if ! port_open 6379; then
  command -v redis-server >/dev/null || { echo "test: installing Redis"; apt_install redis-server; }
  echo "test: starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 1 30); do port_open 6379 && break; sleep 1; done
fi

echo "test: ruff"
"$BIN/ruff" check .
"$BIN/ruff" format --check .
echo "test: mypy"
"$BIN/mypy"

export CRM_TEST_REDIS_URL="$REDIS_URL_TEST" CRM_TEST_POSTGRES_URL="$PG_URL"
export CRM_DATA_DIR="${CRM_DATA_DIR:-$PWD/var/test}"
unset DATABASE_URL REDIS_URL

echo "test: pytest on SQLite"
"$BIN/pytest" -m "not postgres" "$@"

echo "test: pytest on PostgreSQL"
DATABASE_URL="$PG_URL" "$BIN/pytest" "$@"

# The benchmark harness must keep working: a quick run that fails unless every
# phase ran and every figure was produced (the targets are reported, not asserted).
echo "test: bench --quick --check"
"$BIN/python" -m bench --quick --check --json var/bench/quick-results.json
