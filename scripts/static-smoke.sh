#!/usr/bin/env bash
# Proves a release binary is static: runs it in an empty chroot holding only the binary
# (plus /proc and /tmp) and checks that it answers /healthz with its version, serves the
# API (a request id, i.e. random numbers, works) and exits 0 on SIGTERM.
#
#   scripts/static-smoke.sh BINARY
#
# Needs root (chroot, a mount namespace for /proc); without it, it says so and fails.
set -euo pipefail
bin=${1:?usage: static-smoke.sh BINARY}
if [ "$(id -u)" != 0 ]; then
  echo "static-smoke: needs root for chroot" >&2
  exit 1
fi
root=$(mktemp -d)
trap 'umount "$root/proc" 2>/dev/null || true; rm -rf "$root"' EXIT
mkdir -p "$root/proc" "$root/tmp"
cp "$bin" "$root/agentd"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log="$root.log"
unshare --mount --fork --kill-child sh -c '
  mount -t proc proc "$1/proc" && exec chroot "$1" /agentd serve --listen "127.0.0.1:$2" \
    --state-dir /tmp/state --socket /tmp/agentd.sock --workdir /tmp --log-format json' \
  sh "$root" "$port" 2>"$log" &
pid=$!
ok=
for _ in $(seq 1 200); do
  if out=$(curl -fsS "http://127.0.0.1:$port/healthz" 2>/dev/null); then ok=1; break; fi
  sleep 0.05
done
fail() { echo "static-smoke: $*" >&2; cat "$log" >&2; kill -KILL "$pid" 2>/dev/null || true; exit 1; }
[ -n "$ok" ] || fail "no answer on /healthz"
version=$("$bin" version | head -1 | cut -d' ' -f2)
case "$out" in
  *"\"status\":\"ok\""*"\"version\":\"$version\""*) ;;
  *) fail "unexpected /healthz answer: $out" ;;
esac
hello=$(curl -sS -D - "http://127.0.0.1:$port/" | tr -d '\r')
echo "$hello" | grep -qi '^x-request-id: [0-9a-f]\{32\}$' || fail "no request id: $hello"
echo "$hello" | grep -q '"message":"Hello from the agent!"' || fail "no hello: $hello"
daemon=$(tr -d " " < "/proc/$pid/task/$pid/children")
kill -TERM $daemon
status=0
timeout 15 tail --pid="$daemon" -f /dev/null || fail "agentd did not exit within 15 s of SIGTERM"
wait "$pid" || status=$?
[ "$status" = 0 ] || fail "exit status $status after SIGTERM"
grep -q '"level":"error"' "$log" && fail "errors logged"
rm -f "$log"
echo "static-smoke: ok ($bin answered /healthz in an empty chroot: $out)"
