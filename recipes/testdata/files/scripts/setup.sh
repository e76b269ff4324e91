#!/bin/sh
set -eu
echo "level $LEVEL"
