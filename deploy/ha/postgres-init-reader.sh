#!/bin/sh
# The read-only role `tritonops_reader` for the Triton pods' readiness probe (`tritonops fleet ready` reads the
# desired state and never writes). The postgres image runs this once, when it initialises an empty data directory
# (/docker-entrypoint-initdb.d); deploy/ha mounts it from a ConfigMap, docker-compose.yml from the repository.
# On a managed PostgreSQL run it once by hand with the same variables (and PGHOST/PGPORT/PGPASSWORD for the owner).
# The owner ($POSTGRES_USER) creates the tables later, at the controller's first start; the default privileges
# below make each readable by the reader then.
#
#   POSTGRES_USER, POSTGRES_DB     the owner role and the database (as the postgres image has them)
#   TRITONOPS_READER_PASSWORD      the reader's password, or TRITONOPS_READER_PASSWORD_FILE naming a file with it
set -eu

password="${TRITONOPS_READER_PASSWORD:-}"
if [ -z "$password" ] && [ -n "${TRITONOPS_READER_PASSWORD_FILE:-}" ]; then
    password="$(cat "$TRITONOPS_READER_PASSWORD_FILE")"
fi
[ -n "$password" ] || { echo "postgres-init-reader: TRITONOPS_READER_PASSWORD(_FILE) is not set or empty" >&2; exit 2; }

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v owner="$POSTGRES_USER" -v db="$POSTGRES_DB" -v password="$password" <<'SQL'
CREATE ROLE tritonops_reader LOGIN PASSWORD :'password';
GRANT CONNECT ON DATABASE :"db" TO tritonops_reader;
GRANT USAGE ON SCHEMA public TO tritonops_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO tritonops_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO tritonops_reader;
SQL
echo "postgres-init-reader: role tritonops_reader can read $POSTGRES_DB"
