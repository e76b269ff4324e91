#!/usr/bin/env bash
# Installs the npm packages validate.cjs uses, as package-lock.json pins them, into
# INGOT_NPM_DIR (by default ${XDG_CACHE_HOME:-~/.cache}/ingot/npm): outside the clone, so the
# work tree stays clean. Prints nothing when that lock is installed already. `make deps-test` runs it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${INGOT_NPM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ingot/npm}
if cmp -s "$here/package-lock.json" "$dir/.installed-lock.json" && [ -d "$dir/node_modules" ]; then
	exit 0
fi
command -v npm >/dev/null || { echo "install.sh: npm is missing (make deps-test installs it)" >&2; exit 1; }
mkdir -p "$dir"
cp "$here/package.json" "$here/package-lock.json" "$dir/"
echo "npm: installing the SBOM validators into $dir" >&2
# --ignore-scripts: none of these packages needs an install script, and none gets to run one.
npm ci --prefix "$dir" --ignore-scripts --no-audit --no-fund --loglevel=error >&2
cp "$here/package-lock.json" "$dir/.installed-lock.json"
