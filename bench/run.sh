#!/usr/bin/env bash
# `make bench`: install what the benchmark needs, then run bench/harness.py.
#   wrk, nginx, haproxy   from Debian's packages (skipped when already installed)
#   matplotlib            from PyPI into .venv (bench-only, for the PNG plot)
# BENCH_QUICK=1 gives a ~1.5-minute smoke run; see bench/harness.py for every knob.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

if [[ ! -x $PY ]]; then
  echo "bench: no .venv; run it through 'make bench', which creates it" >&2
  exit 2
fi

missing=()
for tool in wrk nginx haproxy; do
  # nginx and haproxy live in /usr/sbin, which a non-root PATH may lack
  if ! command -v "$tool" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$tool ]]; then
    missing+=("$tool")
  fi
done
if ((${#missing[@]})); then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  echo "bench: installing ${missing[*]} from Debian's packages" >&2
  $SUDO apt-get update -qq
  # the packages' init scripts must not start a system nginx/haproxy on ports 80/443:
  # policy-rc.d is honoured by invoke-rc.d; ours is removed again right after
  POLICY=/usr/sbin/policy-rc.d
  OURS=""
  if [[ ! -e $POLICY ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee $POLICY >/dev/null
    $SUDO chmod +x $POLICY
    OURS=1
    trap '$SUDO rm -f $POLICY' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  if [[ -n $OURS ]]; then $SUDO rm -f $POLICY; trap - EXIT; fi
fi
export PATH="$PATH:/usr/sbin"

if ! $PY -c 'import matplotlib' >/dev/null 2>&1; then
  echo "bench: installing the bench's Python requirements (bench/requirements.txt) into .venv" >&2
  $PY -m pip install --disable-pip-version-check -q -r bench/requirements.txt
fi

exec $PY -m bench.harness "$@"
