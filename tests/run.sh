#!/usr/bin/env bash
# The project's test command (README): unit, parity and end-to-end CLI tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/genllava-target}"
cargo test -q --workspace --lib --bins --tests
