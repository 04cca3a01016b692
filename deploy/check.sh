#!/usr/bin/env bash
# Follows docs/deploy.md on this (disposable) Debian machine: two Kefu processes behind nginx, MariaDB, Redis,
# then tries the result (docs/deploy.md, section 7). Run as root from a checkout:  bash deploy/check.sh [--keep]
# It changes the machine: see the guide's section 7 for what it touches.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "deploy/check.sh: run it as root (it installs and configures the machine)" >&2; exit 2; }
# The checker itself (Chromium through Playwright, the database client) runs from the checkout's test environment;
# what it deploys is installed by the guide's own steps into /srv/kefu/app.
make --quiet install-test >/dev/null 2>&1 || { echo "deploy/check.sh: make install-test failed" >&2; exit 1; }
exec .venv/bin/python deploy/check.py "$@"
