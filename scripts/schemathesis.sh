#!/usr/bin/env bash
# Property-based API test: runs schemathesis (PyPI, pinned) against the OpenAPI document a
# real agentd serves, with a bounded number of examples per operation. Checks: no 5xx
# (`not_a_server_error`), every answer's status, content type and body as documented.
#
#   scripts/schemathesis.sh [--max-examples N] [--seed S] [extra schemathesis args...]
#   scripts/schemathesis.sh --install-only      # just the venv (scripts/setup-test-deps.sh)
#
# Installs schemathesis in a venv under target/schemathesis/ (needs python3 with venv and
# pip, and the network the first time). Builds the debug binary unless AGENTD_BIN names
# one. The daemon runs with a token, a temp state dir, a temp workdir holding an
# AGENTS.md, a skill, a git repository and an .mcp.json (the in-repo fake MCP server), and
# HOME in the temp dir: generated requests start real `sh -c` commands (random strings),
# so nothing of the developer's is in reach by default paths. The WebSocket operation
# (`x-websocket`) is excluded: tests/it/openapi.rs covers it.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
max_examples=20
seed=4114
extra=()
install_only=
while [ $# -gt 0 ]; do
  case "$1" in
    --max-examples) max_examples=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --install-only) install_only=1; shift ;;
    *) extra+=("$1"); shift ;;
  esac
done

venv=target/schemathesis/venv
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION\$"; then
  python3 -m venv "$venv"
  # Every transitive dependency pinned too (a newer hypothesis broke an older schemathesis).
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    -c scripts/schemathesis-constraints.txt "schemathesis==$SCHEMATHESIS_VERSION"
fi
if [ -n "$install_only" ]; then exit 0; fi

if [ -z "${AGENTD_BIN:-}" ]; then
  cargo build --quiet -p agentd --bin agentd
  cargo build --quiet -p agentd-tests --bin fake-mcp-server
  AGENTD_BIN=target/debug/agentd
fi
fake_mcp=$(dirname "$AGENTD_BIN")/fake-mcp-server

tmp=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/home" "$tmp/work/.agents/skills/demo" "$tmp/work/repo"
printf 'Be brief.\n' >"$tmp/work/AGENTS.md"
printf -- '---\nname: demo\ndescription: A demo skill\n---\nBody.\n' \
  >"$tmp/work/.agents/skills/demo/SKILL.md"
git -C "$tmp/work/repo" init --quiet
if [ -x "$fake_mcp" ]; then
  printf '{"mcpServers":{"fake":{"command":"%s"}}}\n' "$(realpath "$fake_mcp")" >"$tmp/work/.mcp.json"
fi
token=schemathesis-token
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
env -i PATH="$PATH" HOME="$tmp/home" AGENTD_AUTH_TOKEN="$token" \
  "$AGENTD_BIN" serve --listen "127.0.0.1:$port" --state-dir "$tmp/state" \
  --socket "$tmp/agentd.sock" --workdir "$tmp/work" --log-format json --log-level warn \
  --max-processes 64 --mcp-call-timeout-ms 2000 2>"$tmp/agentd.log" &
pid=$!
for _ in $(seq 1 200); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.05
done

# The document is served behind the token, which schemathesis does not send when it loads
# the schema: fetch it first.
curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/v0/openapi.json" \
  -o "$tmp/openapi.json"
status=0
"$venv/bin/schemathesis" run "$tmp/openapi.json" \
  --url "http://127.0.0.1:$port" \
  -H "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --exclude-path /api/v0/git/watch \
  --max-examples "$max_examples" --seed "$seed" --workers 1 \
  --generation-database none --no-color \
  "${extra[@]}" || status=$?
if ! kill -0 "$pid" 2>/dev/null; then
  echo "schemathesis: agentd died during the run; its log:" >&2
  cat "$tmp/agentd.log" >&2
  exit 1
fi
if grep -q '"level":"ERROR"' "$tmp/agentd.log"; then
  echo "schemathesis: agentd logged errors:" >&2
  grep '"level":"ERROR"' "$tmp/agentd.log" >&2
fi
exit "$status"
