#!/bin/bash
# Entrypoint of the sandbox image deployer-sandbox/postgres:15 (Debian's postgresql-15 on a
# debootstrapped bookworm). It mirrors the contract of the official postgres image's
# docker-entrypoint.sh, so the same docker-compose.yml runs on a real VPS with postgres:15:
#   POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_USER
#   (default postgres), POSTGRES_DB (default $POSTGRES_USER), PGDATA, POSTGRES_INITDB_ARGS,
#   POSTGRES_HOST_AUTH_METHOD (default scram-sha-256), /docker-entrypoint-initdb.d/*.
# Deliberate difference: pg_hba trusts only the unix socket; every TCP connection (also from
# 127.0.0.1) needs a password. With host networking 127.0.0.1 is the VPS itself, so the
# official image's "trust localhost" would let any local process in as any role.
# PGPORT (read by postgres and psql alike) picks the port, so `psql` in `exec` finds the
# socket. SIGTERM and SIGINT both trigger a fast shutdown (the official image relies on
# STOPSIGNAL SIGINT; here a plain `kill`/`docker stop` also stops promptly and cleanly).
set -Eeo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
export PGDATA POSTGRES_USER POSTGRES_DB

log() { echo "entrypoint: $*" >&2; }

# `docker run image -c foo=bar` means `postgres -c foo=bar`, as in the official image.
if [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi

# Like the official image: anything but a server start (other programs, or postgres asked
# for --version/--help/--describe-config) runs as is, without initialising a cluster.
want_info() {
	local arg
	for arg; do
		case "$arg" in
			-'?'|--help|--describe-config|-V|--version) return 0 ;;
		esac
	done
	return 1
}
if [ "$1" != 'postgres' ] || want_info "$@"; then
	exec "$@"
fi

if [ "$(id -u)" = '0' ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chown postgres:postgres "$PGDATA" /var/run/postgresql
	chmod 700 "$PGDATA"
	chmod 2775 /var/run/postgresql
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

init_database() {
	if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != 'trust' ]; then
		log 'error: database is uninitialized and superuser password is not specified.'
		log '       set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust, not recommended)'
		exit 1
	fi
	log "initializing cluster in $PGDATA"
	local pwfile
	pwfile="$(mktemp)"
	printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
	# shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a word list by contract
	initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
		--auth-host="$POSTGRES_HOST_AUTH_METHOD" --encoding=UTF8 --locale=C.UTF-8 \
		$POSTGRES_INITDB_ARGS >&2
	rm -f "$pwfile"
	cat > "$PGDATA/pg_hba.conf" <<HBA
# written by the sandbox entrypoint: socket trusted, TCP always authenticated
local all all trust
host  all all 0.0.0.0/0 $POSTGRES_HOST_AUTH_METHOD
host  all all ::/0      $POSTGRES_HOST_AUTH_METHOD
HBA
	printf "listen_addresses = '*'\n" >> "$PGDATA/postgresql.conf"

	# Socket-only temporary server for the one-off setup, like the official image.
	pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >&2
	local psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres)
	if [ "$POSTGRES_DB" != 'postgres' ]; then
		"${psql[@]}" --set db="$POSTGRES_DB" <<-'SQL' >&2
			CREATE DATABASE :"db";
		SQL
	fi
	local f
	for f in /docker-entrypoint-initdb.d/*; do
		[ -e "$f" ] || continue
		case "$f" in
			*.sh) log "running $f"; . "$f" ;;
			*.sql) log "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" >&2 ;;
			*.sql.gz) log "running $f"; gunzip -c "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" >&2 ;;
			*) log "ignoring $f" ;;
		esac
	done
	pg_ctl -D "$PGDATA" -m fast -w stop >&2
	log 'init done'
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	init_database
fi

# Run postgres as a child so TERM can be mapped to a fast shutdown (see header).
"$@" &
child=$!
on_signal() { kill -"$1" "$child" 2>/dev/null || true; }
trap 'on_signal INT' TERM INT
trap 'on_signal QUIT' QUIT
trap 'on_signal HUP' HUP
status=0
while true; do
	wait "$child" && status=0 || status=$?
	# wait returns >128 when interrupted by a trapped signal: keep waiting for the child.
	if ! kill -0 "$child" 2>/dev/null; then
		break
	fi
done
exit "$status"
