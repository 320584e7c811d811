#!/bin/sh
# The entrypoint of the three-tier example's PostgreSQL image.
#
# The volume is mounted at /var/lib/postgresql/data; the cluster lives in
# its `pgdata` directory. The first start initialises it (in `pgdata.init`,
# renamed when complete, so a start killed halfway leaves nothing that
# looks like a cluster); every start then runs the server as `postgres`
# (PostgreSQL refuses to run as root), listening on $HOST:$PORT (the process
# provider gives each instance its own address in an environment with
# rules, a loopback port otherwise; Docker uses 0.0.0.0:5432).
set -eu
vol=/var/lib/postgresql/data
data=$vol/pgdata
bin=/usr/lib/postgresql/15/bin
as_postgres() { /usr/bin/setpriv --reuid=999 --regid=999 --clear-groups "$@"; }

chown 999:999 "$vol"
chmod 0700 "$vol"
if [ ! -s "$data/PG_VERSION" ]; then
  rm -rf "$vol/pgdata.init"
  as_postgres "$bin/initdb" -D "$vol/pgdata.init" -U postgres --auth=trust \
    --encoding=UTF8 --locale=C --no-instructions >/dev/null
  # Clients on the instance's own network (Docker's bridge) may connect,
  # and so may Glint's instance network, where the kernel lets through only
  # what the environment's rules declare (docs/network.md).
  echo "host all all samenet trust" >>"$vol/pgdata.init/pg_hba.conf"
  echo "host all all 10.88.0.0/16 trust" >>"$vol/pgdata.init/pg_hba.conf"
  mv "$vol/pgdata.init" "$data"
fi
exec /usr/bin/setpriv --reuid=999 --regid=999 --clear-groups "$bin/postgres" -D "$data" \
  -p "${PORT:-5432}" -c listen_addresses="${HOST:-*}" \
  -c unix_socket_directories=/tmp -c jit=off -c logging_collector=off
