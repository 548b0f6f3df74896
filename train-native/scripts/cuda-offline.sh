#!/usr/bin/env bash
# Build `train-native` with the `cuda` feature on a machine that cannot download LLVM, and
# package it for a GPU machine that has the NVIDIA driver and NVRTC (CUDA 12/13) but no network.
#
#   train-native/scripts/cuda-offline.sh OUT_DIR
#
# burn-cuda's cubecl-cuda always links cubecl-llvm, whose build script downloads an LLVM
# bundle from GitHub. The `cuda` feature selects cubecl-cuda's CUDA C++ compiler (NVRTC), so
# LLVM is never called; this build skips the download (DOCS_RS=1, as docs.rs builds), leaves
# the LLVM symbols unresolved at link time, and writes a stub library that defines them (each
# aborts, naming itself, if ever called). On the GPU machine:
#
#   LD_PRELOAD=OUT_DIR/libllvmstub.so OUT_DIR/train-native train --device cuda
#
# (LD_LIBRARY_PATH must reach libcuda.so and libnvrtc.so). With network, a plain
# `cargo build --release -p train-native --features cuda` needs none of this.
set -euo pipefail
out=${1:?usage: cuda-offline.sh OUT_DIR}
root=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$HOME/.cache/genllava-cuda-target}
mkdir -p "$out"
(cd "$root" && DOCS_RS=1 CARGO_TARGET_DIR="$target" \
    RUSTFLAGS='-C link-arg=-Wl,--unresolved-symbols=ignore-all' \
    cargo build --release -p train-native --features "cuda,${EXTRA_FEATURES:-wgpu}")
cp "$target/release/train-native" "$out/train-native"
strip "$out/train-native"
# The symbols left for the loader: cubecl's LLVM shims and LLVM's C API.
nm -D --undefined-only "$out/train-native" | awk '{print $2}' | grep -E '^(LLVM|cubecl_)' | sort -u > "$out/llvm-symbols.txt"
{
    echo '#include <stdio.h>'
    echo '#include <stdlib.h>'
    echo 'static void die(const char *s) { fprintf(stderr, "LLVM stub called: %s (burn-cuda must compile with NVRTC)\n", s); abort(); }'
    while read -r s; do echo "void $s(void) { die(\"$s\"); }"; done < "$out/llvm-symbols.txt"
} > "$out/llvmstub.c"
cc -shared -fPIC -O1 -o "$out/libllvmstub.so" "$out/llvmstub.c"
echo "wrote $out/train-native and $out/libllvmstub.so ($(wc -l < "$out/llvm-symbols.txt") stubbed symbols)"
