#!/usr/bin/env bash
# `make run`: the upstream app (gunicorn), the development issuer and the gateway, each in the background
# with its log in $RUN_DIR/; this script stays in the foreground until Ctrl-C or `make stop` (which ends it
# too, through its pid file) and then stops all three.
#
# Settings (make run NAME=VALUE, or the environment):
#   GATEWAY_PORT=8080 ISSUER_PORT=9000 UPSTREAM_PORT=5000 ADMIN_PORT=9901   where each part listens (127.0.0.1)
#   CONFIG=config/routes.yaml   the rules the gateway serves
#   UPSTREAM=                   your own app's URL; unset: the shipped Flask app is started on UPSTREAM_PORT
#   RUN_DIR=.run                pid files and logs
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RUN_DIR=${RUN_DIR:-.run}
GATEWAY_PORT=${GATEWAY_PORT:-8080}
ISSUER_PORT=${ISSUER_PORT:-9000}
UPSTREAM_PORT=${UPSTREAM_PORT:-5000}
ADMIN_PORT=${ADMIN_PORT:-9901}
CONFIG=${CONFIG:-config/routes.yaml}
UPSTREAM=${UPSTREAM:-}
SERVICES="gateway devissuer upstream"
mkdir -p "$RUN_DIR"

stop_services() {
  local name pid pids=()
  for name in $SERVICES; do
    if [[ -f "$RUN_DIR/$name.pid" ]]; then
      pid=$(cat "$RUN_DIR/$name.pid")
      kill "$pid" 2>/dev/null && pids+=("$pid")
      rm -f "$RUN_DIR/$name.pid"
    fi
  done
  wait_gone "${pids[@]}"
}

wait_gone() {  # wait_gone PID...: until each has exited, at most 15 s
  local deadline=$((SECONDS + 15)) pid
  for pid in "$@"; do
    while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.1; done
  done
}

if [[ "${1:-}" == "stop" ]]; then
  if [[ -f "$RUN_DIR/run.pid" ]]; then  # the foreground part: it stops the services itself, then exits
    pid=$(cat "$RUN_DIR/run.pid")
    kill "$pid" 2>/dev/null && wait_gone "$pid"
    rm -f "$RUN_DIR/run.pid"
  fi
  stop_services
  exit 0
fi

wait_for() {  # wait_for NAME URL: poll until the URL answers, up to 20 s, while NAME still runs
  local deadline=$((SECONDS + 20))
  until curl -sf -o /dev/null "$2"; do
    if (( SECONDS > deadline )) || ! kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null; then
      echo "$1 did not start; its log ($RUN_DIR/$1.log):" >&2; tail -n 20 "$RUN_DIR/$1.log" >&2
      stop_services; exit 1
    fi
    sleep 0.1
  done
}

if [[ -f "$RUN_DIR/run.pid" ]] && kill -0 "$(cat "$RUN_DIR/run.pid")" 2>/dev/null; then
  echo "make run is already running (pid $(cat "$RUN_DIR/run.pid")); make stop ends it" >&2; exit 1
fi
stop_services
ports="$GATEWAY_PORT $ISSUER_PORT $ADMIN_PORT"
if [[ -z "$UPSTREAM" ]]; then ports="$ports $UPSTREAM_PORT"; fi
for port in $ports; do
  if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
    echo "port $port is already in use; stop what runs there (make stop), or choose other ports:" \
         "make run GATEWAY_PORT=... ISSUER_PORT=... UPSTREAM_PORT=... ADMIN_PORT=..." >&2
    exit 1
  fi
done
echo $$ >"$RUN_DIR/run.pid"
finish() {  # finish CODE: on Ctrl-C, make stop (TERM) or any exit, nothing is left running
  trap - INT TERM EXIT; stop_services; rm -f "$RUN_DIR/run.pid"; exit "$1"
}
trap 'finish 0' INT TERM
trap 'finish $?' EXIT

ISSUER="http://127.0.0.1:$ISSUER_PORT/"
if [[ -z "$UPSTREAM" ]]; then
  UPSTREAM="http://127.0.0.1:$UPSTREAM_PORT"
  UPSTREAM_BIND="127.0.0.1:$UPSTREAM_PORT" .venv/bin/gunicorn -c upstream/gunicorn.conf.py upstream.app:app \
    >"$RUN_DIR/upstream.log" 2>&1 &
  echo $! >"$RUN_DIR/upstream.pid"
  APP="the shipped Flask app on $UPSTREAM"
else
  curl -s -o /dev/null "$UPSTREAM/" || echo "note: nothing answers at $UPSTREAM yet; start your app there" >&2
  APP="your app at $UPSTREAM"
fi
$PY -m gateway devissuer --listen "127.0.0.1:$ISSUER_PORT" >"$RUN_DIR/devissuer.log" 2>&1 &
echo $! >"$RUN_DIR/devissuer.pid"
if [[ -f "$RUN_DIR/upstream.pid" ]]; then wait_for upstream "$UPSTREAM/"; fi  # both start at once
wait_for devissuer "${ISSUER}.well-known/jwks.json"
export AUTH_ISSUER=$ISSUER
GATEWAY_LISTEN="127.0.0.1:$GATEWAY_PORT" GATEWAY_UPSTREAM="$UPSTREAM" GATEWAY_ADMIN="127.0.0.1:$ADMIN_PORT" \
  $PY -m gateway serve --config "$CONFIG" >"$RUN_DIR/gateway.log" 2>&1 &
echo $! >"$RUN_DIR/gateway.pid"
wait_for gateway "http://127.0.0.1:$ADMIN_PORT/readyz"

if [[ "$CONFIG" == config/routes.yaml ]]; then
  USER_TOKEN=$($PY -m gateway token --scope "read:user" --sub alice 2>/dev/null)
  ADMIN_TOKEN=$($PY -m gateway token --scope "read:user read:admin" --sub admin 2>/dev/null)
fi
echo
echo "Gateway on http://localhost:$GATEWAY_PORT -> $APP; development issuer on $ISSUER (local use only)."
echo "Rules from $CONFIG. Logs: $RUN_DIR/gateway.log, $RUN_DIR/devissuer.log, $RUN_DIR/upstream.log."
echo "In another terminal, in this directory:"
echo
echo "source .venv/bin/activate"
if [[ "$ISSUER_PORT" != 9000 ]]; then echo "export AUTH_ISSUER=$ISSUER"; fi
if [[ "$CONFIG" == config/routes.yaml ]]; then
  echo "export USER_TOKEN=$USER_TOKEN"
  echo "export ADMIN_TOKEN=$ADMIN_TOKEN"
  cat <<MSG
curl -i http://localhost:$GATEWAY_PORT/                                             # 200 {"msg":"Hello world!"}
curl -i http://localhost:$GATEWAY_PORT/user                                         # 401 authorization_header_missing
curl -i -H "Authorization: Bearer \$USER_TOKEN"  http://localhost:$GATEWAY_PORT/user  # 200 {"msg":"Hello user!"}
curl -i -H "Authorization: Bearer \$USER_TOKEN"  http://localhost:$GATEWAY_PORT/admin # 403 insufficient_scope
curl -i -H "Authorization: Bearer \$ADMIN_TOKEN" http://localhost:$GATEWAY_PORT/admin # 200 {"msg":"Hello admin!"}
MSG
else
  echo "gateway token --scope \"...\" --claim NAME=VALUE   # tokens for your rules (README: Protect your own app)"
  echo
  $PY -m gateway check --offline --config "$CONFIG" | sed 1,2d
fi
echo
echo "Ctrl-C here, or make stop, stops everything."
wait
