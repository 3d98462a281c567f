#!/usr/bin/env bash
# Profile the gateway under load with py-spy (installed into .venv from PyPI on first use).
# Needs what `make bench` installs (wrk, nginx). See bench/profile.py for the options.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export PATH="$PATH:/usr/sbin"
if [[ ! -x .venv/bin/py-spy ]]; then
  $PY -m pip install --disable-pip-version-check -q -r bench/requirements-profile.txt
fi
exec $PY -m bench.profile "$@"
