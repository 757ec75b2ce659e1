#!/usr/bin/env bash
# The official postgres image's entry point, as far as our compose file uses it: as root, it
# hands the data folder to postgres and goes on as that user; on an empty data folder it makes
# the cluster (its password from POSTGRES_PASSWORD or the file POSTGRES_PASSWORD_FILE) and runs
# /docker-entrypoint-initdb.d/*.sh and *.sql; then it runs the command.
set -Eeuo pipefail
if [ "${1:0:1}" = '-' ]; then
    set -- postgres "$@"
fi
if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
    install --directory --owner postgres --group postgres --mode 700 "$PGDATA"
    chown -R postgres:postgres "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then  # as the official image: the password from a file
        POSTGRES_PASSWORD=$(< "$POSTGRES_PASSWORD_FILE")
    fi
    export POSTGRES_USER="${POSTGRES_USER:-postgres}"
    export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
    echo "Making a new cluster in $PGDATA"
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is needed}") \
        --auth-local=trust --auth-host=scram-sha-256 --pgdata="$PGDATA"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses=''" --wait start
    if [ "$POSTGRES_DB" != postgres ]; then
        psql -v ON_ERROR_STOP=1 --username="$POSTGRES_USER" --dbname=postgres \
            --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db"'
    fi
    for script in /docker-entrypoint-initdb.d/*; do
        case "$script" in
            *.sh) echo "Running $script"; . "$script" ;;
            *.sql) echo "Running $script"; psql -v ON_ERROR_STOP=1 --username="$POSTGRES_USER" --dbname="$POSTGRES_DB" --file="$script" ;;
            *) ;;
        esac
    done
    pg_ctl --pgdata="$PGDATA" --mode=fast --wait stop
    echo "The new cluster is ready"
fi
exec "$@"
