#!/usr/bin/env bash
# Builds the portable release binary: a fully static x86_64 Linux executable (glibc linked
# statically with `+crt-static`; DNS through reqwest's pure-Rust resolver, so no NSS module
# is needed at run time), plus its SHA-256.
#
#   scripts/release.sh [OUT_DIR]     (default: dist/)
#
# Prints the binary's path, size and checksum. Fails if the result is not static.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
target=x86_64-unknown-linux-gnu
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then commit="$commit-dirty"; fi
# --target keeps RUSTFLAGS away from build scripts and proc macros (which must stay dynamic).
# getrandom looks up glibc's getrandom() with dlsym, which a static binary cannot do, and
# falls back to /dev/urandom (absent in a bare chroot): use the syscall directly.
AGENTD_GIT_COMMIT=$commit \
  RUSTFLAGS="-C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"" \
  cargo build --release --locked --target "$target" -p agentd --bin agentd
bin="target/$target/release/agentd"
if readelf -l "$bin" | grep -q INTERP || readelf -d "$bin" | grep -q NEEDED; then
  echo "release: $bin is dynamically linked:" >&2
  readelf -d "$bin" | grep NEEDED >&2 || true
  exit 1
fi
version=$("$bin" version | head -1 | cut -d' ' -f2)
mkdir -p "$out"
name="agentd-$version-x86_64-linux"
cp "$bin" "$out/$name"
(cd "$out" && sha256sum "$name" > "$name.sha256")
size=$(stat -c %s "$out/$name")
echo "release: $out/$name ($((size / 1024)) KiB, limit 15360 KiB)"
cat "$out/$name.sha256"
if [ "$size" -gt $((15 * 1024 * 1024)) ]; then
  echo "release: binary over 15 MiB" >&2
  exit 1
fi
