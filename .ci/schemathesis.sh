#!/usr/bin/env bash
# Fuzz the REST API against its own OpenAPI document with schemathesis (PyPI), the way
# a client nobody here wrote would call it: schemathesis' default checks, no failures.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v st >/dev/null 2>&1 || python3 -m pip install -q schemathesis
bin="$PWD/target/debug/usher"
[ -x "$bin" ] || cargo build -q -p usher
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cd "$work"
USHER_ADMIN_PASSWORD=schemathesis-admin USHER_LOG_ACCESS=off RUST_LOG=warn \
  "$bin" serve --listen "127.0.0.1:$port" >"$work/usher.out" 2>"$work/usher.err" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/usher/healthz" >/dev/null && break
  sleep 0.1
done
token=$("$bin" token create schemathesis 2>/dev/null)
st run "http://127.0.0.1:$port/usher/api/v1/openapi.json" \
  -H "Authorization: Bearer $token" --max-examples 50 --seed "${SCHEMATHESIS_SEED:-1}"
# Whatever the input, the server never answered 5xx and is still up.
if grep -q "panicked" "$work/usher.err"; then
  echo "usher panicked during the run:"; cat "$work/usher.err"; exit 1
fi
curl -sf "http://127.0.0.1:$port/usher/healthz" >/dev/null
echo "schemathesis: passed"
