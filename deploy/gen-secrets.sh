#!/bin/sh
# Makes the secrets a Citadel cluster needs, as files, for compose.yaml
# (which mounts them from deploy/secrets/) and for the Kubernetes Secret
# (kubectl create secret generic citadel-secrets --from-file=DIR):
#
#   ticket.key       hex key that signs login tickets (login and gates)
#   cluster.key      "ID HEX": signs every NSQ message (every process)
#   admin.token      bearer token of the admin HTTP port (every process)
#   pg_password      the PostgreSQL password (the postgres server)
#   pg_service.conf  the whole PostgreSQL DSN, password included, as a
#                    PostgreSQL service file: citadel runs with
#                    -pg service=citadel and PGSERVICEFILE pointing here
#
# Usage: deploy/gen-secrets.sh [DIR [PGHOST]]   (DIR: deploy/secrets,
# PGHOST: postgres). It refuses to overwrite: new keys for a running
# cluster are a rotation (docs/deploy.md), not a fresh start.
set -eu
dir=${1:-"$(dirname "$0")/secrets"}
pghost=${2:-postgres}
for f in ticket.key cluster.key admin.token pg_password pg_service.conf; do
	if [ -e "$dir/$f" ]; then
		echo "gen-secrets: $dir/$f exists; not overwriting any secret (remove $dir to start over)" >&2
		exit 1
	fi
done
umask 077
mkdir -p "$dir"
hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
printf '%s\n' "$(hex 32)" >"$dir/ticket.key"
printf '1 %s\n' "$(hex 32)" >"$dir/cluster.key"
printf '%s\n' "$(hex 32)" >"$dir/admin.token"
pw=$(hex 24)
printf '%s\n' "$pw" >"$dir/pg_password"
printf '[citadel]\nhost=%s\nport=5432\ndbname=citadel\nuser=citadel\npassword=%s\nsslmode=disable\n' "$pghost" "$pw" >"$dir/pg_service.conf"
# Compose bind-mounts each file as it is on the host: the server's user in
# the container (65532) must be able to read it, so the files are 0644 and
# the directory, 0700, keeps the host's other users out.
chmod 0700 "$dir"
chmod 0644 "$dir"/ticket.key "$dir"/cluster.key "$dir"/admin.token "$dir"/pg_password "$dir"/pg_service.conf
echo "gen-secrets: wrote $dir/{ticket.key,cluster.key,admin.token,pg_password,pg_service.conf}"
