#!/usr/bin/env bash
# Checks the packaging files with real parsers: systemd units (systemd-analyze verify, with
# ExecStart pointed at a real binary), shell scripts (sh -n), the Terraform snippet
# (terraform fmt, when terraform is installed).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin=$(ls target/dist/agentd-*-x86_64-linux 2>/dev/null | head -1 || true)
[ -n "$bin" ] || bin=/bin/true
for unit in packaging/systemd/*.service; do
  name=$(basename "$unit")
  sed "s|/usr/local/bin/agentd|$(realpath "$bin")|" "$unit" > "$tmp/$name"
  if command -v systemd-analyze >/dev/null; then
    out=$(systemd-analyze verify "$tmp/$name" 2>&1 || true)
    # Users named in User= need not exist on the build machine.
    out=$(echo "$out" | grep -v -e "^$" -e "Failed to resolve user" || true)
    if [ -n "$out" ]; then
      echo "check-packaging: $unit: $out" >&2
      exit 1
    fi
  fi
done
for f in packaging/container/*.sh; do
  [ -e "$f" ] && sh -n "$f"
done
if command -v terraform >/dev/null; then
  for f in packaging/coder/*.tf; do
    [ -e "$f" ] && terraform fmt -check -diff "$f"
  done
fi
echo "check-packaging: ok"
