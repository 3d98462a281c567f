#!/usr/bin/env bash
# Starts upstream (gunicorn, 127.0.0.1:5000), the development issuer (127.0.0.1:9000)
# and the gateway (127.0.0.1:8080) in the foreground; Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RUN_DIR=.run
mkdir -p "$RUN_DIR"

stop_all() {
  for name in gateway devissuer upstream; do
    if [[ -f "$RUN_DIR/$name.pid" ]]; then
      kill "$(cat "$RUN_DIR/$name.pid")" 2>/dev/null || true
      rm -f "$RUN_DIR/$name.pid"
    fi
  done
}

if [[ "${1:-}" == "stop" ]]; then stop_all; exit 0; fi

wait_for() {  # wait_for NAME URL: poll until the URL answers, up to 20 s, while NAME still runs
  local deadline=$((SECONDS + 20))
  until curl -s -o /dev/null "$2"; do
    if (( SECONDS > deadline )) || ! kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null; then
      echo "$1 did not start; its log:" >&2; tail -n 20 "$RUN_DIR/$1.log" >&2; stop_all; exit 1
    fi
    sleep 0.1
  done
}

stop_all
for port in 5000 9000 8080; do
  if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
    echo "port $port is already in use; stop what runs there (make stop) and try again" >&2; stop_all; exit 1
  fi
done
trap 'stop_all; exit 0' INT TERM EXIT

.venv/bin/gunicorn -c upstream/gunicorn.conf.py upstream.app:app >"$RUN_DIR/upstream.log" 2>&1 &
echo $! >"$RUN_DIR/upstream.pid"
$PY -m gateway devissuer >"$RUN_DIR/devissuer.log" 2>&1 &
echo $! >"$RUN_DIR/devissuer.pid"
wait_for upstream http://127.0.0.1:5000/
wait_for devissuer http://127.0.0.1:9000/.well-known/jwks.json
$PY -m gateway serve --config config/routes.yaml >"$RUN_DIR/gateway.log" 2>&1 &
echo $! >"$RUN_DIR/gateway.pid"
wait_for gateway http://127.0.0.1:8080/

USER_TOKEN=$($PY -m gateway token --scope "read:user" --sub alice)
ADMIN_TOKEN=$($PY -m gateway token --scope "read:user read:admin" --sub admin)
ADMIN_SECRET=$($PY -c 'import json;print(json.load(open(".devissuer/clients.json"))["dev-admin-client"]["secret"])')

cat <<MSG

Gateway on http://localhost:8080 -> Flask app on 127.0.0.1:5000 (dev issuer on 127.0.0.1:9000).
The development issuer is for local use only. Logs are in $RUN_DIR/. Ctrl-C stops everything.

  curl -i http://localhost:8080/
  curl -i http://localhost:8080/user
  curl -i -H "Authorization: Bearer $USER_TOKEN" http://localhost:8080/user
  curl -i -H "Authorization: Bearer $USER_TOKEN" http://localhost:8080/admin
  curl -i -H "Authorization: Bearer $ADMIN_TOKEN" http://localhost:8080/admin

  # a token from the issuer's Auth0-style client-credentials endpoint:
  curl -s http://127.0.0.1:9000/oauth/token -H 'content-type: application/json' \\
    -d '{"client_id":"dev-admin-client","client_secret":"$ADMIN_SECRET","audience":"https://api.example.test","grant_type":"client_credentials"}'

MSG
tail -f "$RUN_DIR/gateway.log" &
wait
