#!/bin/sh
# Step 2 of the benchmark recipe (the config step), the same script for ingot and Packer.
set -eu
install -d -m 0755 /etc/bench
cat >/etc/bench/app.conf <<'CONF'
# written by bench/cache/configure.sh
listen = 127.0.0.1:8080
workers = 2
CONF
chmod 0644 /etc/bench/app.conf
