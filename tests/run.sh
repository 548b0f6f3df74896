#!/usr/bin/env bash
# The project's test command (README): installs what the tests need (idempotent,
# quiet), then runs unit, parity and CLI tests, the wasm32 build of core, and the
# browser tests in headless chromium (WebGPU on SwiftShader).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/genllava-target}"
export CARGO_TERM_COLOR=never

rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown >/dev/null
# chromium (+ chromium-driver for wasm-bindgen-test): the browser tests; mesa-vulkan-drivers: lavapipe, the CPU Vulkan driver `--device wgpu` runs on.
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || missing+=(mesa-vulkan-drivers)
if ((${#missing[@]})); then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null
fi
# wgpu's Vulkan loader wants a runtime dir; CI containers have none.
if [[ -z "${XDG_RUNTIME_DIR:-}" ]]; then
    export XDG_RUNTIME_DIR=/tmp/xdg-runtime-$(id -u)
    mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi

echo "== core builds for wasm32-unknown-unknown"
cargo build -q -p genllava --target wasm32-unknown-unknown

echo "== the CUDA feature compiles (DOCS_RS=1 skips burn-cuda's LLVM download; no GPU needed)"
DOCS_RS=1 cargo check -q -p train-native --features cuda

echo "== unit, parity and CLI tests"
cargo test -q --workspace --lib --bins --tests

echo "== --device wgpu on lavapipe: CLI parity with the CPU, data-parallel training on two devices, the WGSL kernels of shaders/, Burn's block quantization"
cargo test -q -p train-native --features wgpu --test cli_wgpu --test wgpu_kernels --test burn_quant --test cli_export_web

echo "== browser: build (wasm-bindgen-cli pinned to Cargo.lock) and test in headless chromium"
(cd www/tests && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
bash www/build.sh
node www/tests/browser.test.mjs

echo "== web crate unit tests in the same headless chromium (wasm-bindgen-test; WebGPU on SwiftShader)"
# Release, to reuse the wasm32 build above; the browser flags are in web/webdriver.json.
# (No -q: cargo would hand --quiet to wasm-bindgen-test-runner, which refuses it.)
(cd web && CHROMEDRIVER="$(command -v chromedriver)" WASM_BINDGEN_TEST_TIMEOUT=600 \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="${GENLLAVA_TOOLS:-$HOME/.cache/genllava-tools}/bin/wasm-bindgen-test-runner" \
    cargo test --release -p genllava-web --target wasm32-unknown-unknown)
