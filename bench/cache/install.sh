#!/bin/sh
# Step 1 of the benchmark recipe, the same script for ingot and Packer: a real package from
# Debian's mirror (the guest reaches it through QEMU's user network and the host).
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends jq
jq --version
