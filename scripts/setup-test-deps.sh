#!/usr/bin/env bash
# Installs everything the test suite needs that is not a Rust crate. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

# Test repositories are created with `git commit`; give git an identity if it has none.
git config --global user.name >/dev/null 2>&1 || git config --global user.name "agentd tests"
git config --global user.email >/dev/null 2>&1 || git config --global user.email "tests@agentd.invalid"
git config --global init.defaultBranch >/dev/null 2>&1 || git config --global init.defaultBranch main

# Real MCP servers (pinned in tests/fixtures/node/package-lock.json). Skipped when installed.
if command -v npm >/dev/null 2>&1; then
  if [ ! -f tests/fixtures/node/node_modules/@modelcontextprotocol/server-everything/package.json ]; then
    npm ci --prefix tests/fixtures/node --no-audit --no-fund
  fi
else
  echo "setup-test-deps: npm not found; the MCP tests need Node.js >= 20 with npm" >&2
  exit 1
fi

# Fuzzing smoke (scripts/fuzz.sh --smoke): the nightly toolchain and cargo-fuzz.
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

# Unused-dependency check (test.sh runs `cargo shear`). Pinned: later releases need a newer
# rustc than rust-toolchain.toml's.
if ! command -v cargo-shear >/dev/null 2>&1; then
  cargo install cargo-shear --version 1.5.2 --locked
fi

# schemathesis (scripts/schemathesis.sh): python3 with venv and pip, then the pinned venv.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "setup-test-deps: python3 with the venv and ensurepip modules is needed (apt-get install python3-venv)" >&2
  exit 1
fi
./scripts/schemathesis.sh --install-only
