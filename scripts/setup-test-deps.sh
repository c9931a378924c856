#!/usr/bin/env bash
# Installs everything the test suite needs that is not a Rust crate. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

# Test repositories are created with `git commit`; give git an identity if it has none.
git config --global user.name >/dev/null 2>&1 || git config --global user.name "agentd tests"
git config --global user.email >/dev/null 2>&1 || git config --global user.email "tests@agentd.invalid"
git config --global init.defaultBranch >/dev/null 2>&1 || git config --global init.defaultBranch main
