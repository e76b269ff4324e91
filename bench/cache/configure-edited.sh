#!/bin/sh
# The config step of recipe "b": configure.sh with one setting changed, so that only the last step
# of the recipe differs from recipe "a".
set -eu
install -d -m 0755 /etc/bench
cat >/etc/bench/app.conf <<'CONF'
# written by bench/cache/configure-edited.sh
listen = 127.0.0.1:8080
workers = 4
CONF
chmod 0644 /etc/bench/app.conf
