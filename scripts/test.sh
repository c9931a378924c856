#!/usr/bin/env bash
# The whole test suite on a fresh machine: install test dependencies, check formatting and
# lints, then run every unit and end-to-end test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-test-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# No dependency that no code uses (the fuzz workspace is checked by its own build).
cargo shear
cargo test --workspace --locked
# Property-based run of schemathesis against the served OpenAPI document (~20 s).
./scripts/schemathesis.sh
# The portable release binary is built once so it cannot rot, and proven static.
./scripts/release.sh target/dist
./scripts/static-smoke.sh target/dist/agentd-*-x86_64-linux
./scripts/check-packaging.sh
# Fuzz targets: build them and run each for 10 s from the checked-in corpus.
./scripts/fuzz.sh --smoke
