#!/bin/sh
# Step 1 of recipe "c": a different first step on the same base and cloud-init, so only the
# "booted" checkpoint is shared with recipes "a" and "b".
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends tree
tree --version
