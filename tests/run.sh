#!/usr/bin/env bash
# The project's test command (README): installs what the tests need (idempotent,
# quiet), then runs unit, parity and CLI tests, the wasm32 build of core, and the
# browser tests in headless chromium (WebGPU on SwiftShader).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/genllava-target}"
export CARGO_TERM_COLOR=never

rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown >/dev/null
if ! command -v chromium >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
fi

echo "== core builds for wasm32-unknown-unknown"
cargo build -q -p genllava --target wasm32-unknown-unknown

echo "== the CUDA feature compiles (DOCS_RS=1 skips burn-cuda's LLVM download; no GPU needed)"
DOCS_RS=1 cargo check -q -p train-native --features cuda

echo "== unit, parity and CLI tests"
cargo test -q --workspace --lib --bins --tests

echo "== browser: build (wasm-bindgen-cli pinned to Cargo.lock) and test in headless chromium"
(cd www/tests && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
bash www/build.sh
node www/tests/browser.test.mjs
