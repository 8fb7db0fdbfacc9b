#!/usr/bin/env bash
# Makes a local PostgreSQL ready for the portal store's tests on Debian 12:
# installs it if missing, starts a cluster (with pg_ctlcluster, so it works
# without systemd), creates the role kcare (password kcare) and the database
# kcare_test, and prints the one line to put in the environment:
#
#	export "$(sudo scripts/postgres-test.sh)"   # sets KCARE_TEST_POSTGRES
#	go test ./internal/portal/store/
#
# Only that line goes to stdout; everything else goes to stderr. Running it
# again changes nothing that is already in place.
set -euo pipefail

log() { echo "postgres-test.sh: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
	log "run as root (sudo $0)"
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if ! command -v pg_lsclusters >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
	log "installing postgresql"
	if ! apt-get install -y -q postgresql >&2; then
		apt-get update -q >&2
		apt-get install -y -q postgresql >&2
	fi
fi

# The first cluster pg_lsclusters lists: "Ver Cluster Port Status ...".
cluster() { pg_lsclusters --no-header 2>/dev/null | awk 'NR == 1 { print $1, $2, $3, $4 }'; }

read -r ver name port status <<<"$(cluster)" || true
if [ -z "${ver:-}" ]; then
	ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
	log "creating cluster $ver/main"
	pg_createcluster "$ver" main >&2
	read -r ver name port status <<<"$(cluster)"
fi
if [ "$status" != "online" ]; then
	log "starting cluster $ver/$name on port $port"
	pg_ctlcluster "$ver" "$name" start >&2
fi

# Wait up to 30s for the server to accept connections.
for _ in $(seq 1 30); do
	if su postgres -c "psql -p $port -XtAc 'select 1'" >/dev/null 2>&1; then
		break
	fi
	sleep 1
done

psql_admin() { su postgres -c "psql -p $port -v ON_ERROR_STOP=1 -XtAq $*"; }

if [ "$(psql_admin "-c \"select 1 from pg_roles where rolname = 'kcare'\"")" != "1" ]; then
	log "creating role kcare"
	psql_admin "-c \"create role kcare login createdb password 'kcare'\"" >&2
fi
if [ "$(psql_admin "-c \"select 1 from pg_database where datname = 'kcare_test'\"")" != "1" ]; then
	log "creating database kcare_test"
	psql_admin "-c \"create database kcare_test owner kcare\"" >&2
fi

echo "KCARE_TEST_POSTGRES=postgres://kcare:kcare@127.0.0.1:$port/kcare_test?sslmode=disable"
