#!/bin/sh
# start.sh DIR PORT: run Debian's docker-registry (the distribution registry, /usr/bin/docker-registry)
# on 127.0.0.1:PORT, storing its blobs under DIR/storage. It writes DIR/config.yml and then execs the
# registry in the foreground, so the caller owns the process (a test kills it by its pid; a script
# runs `start.sh DIR PORT &`). No systemd and no auth: the oci tests and bench/oci.sh use it as a
# throwaway loopback registry, which ingot talks to over plain HTTP because it is loopback.
# With HTPASSWD=FILE in the environment (bcrypt entries, as htpasswd -B writes them), the registry
# asks for basic auth with those users.
#
# Install: apt-get install -y docker-registry
set -eu
if [ $# -ne 2 ]; then
	echo "usage: $0 DIR PORT" >&2
	exit 2
fi
dir=$1
port=$2
bin=${DOCKER_REGISTRY:-/usr/bin/docker-registry}
if [ ! -x "$bin" ]; then
	echo "$0: $bin is missing: apt-get install -y docker-registry" >&2
	exit 1
fi
mkdir -p "$dir/storage"
cat >"$dir/config.yml" <<CONF
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  headers:
    X-Content-Type-Options: [nosniff]
CONF
if [ -n "${HTPASSWD:-}" ]; then
	cat >>"$dir/config.yml" <<CONF
auth:
  htpasswd:
    realm: ingot-test
    path: $HTPASSWD
CONF
fi
exec "$bin" serve "$dir/config.yml"
