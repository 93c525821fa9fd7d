#!/usr/bin/env bash
# Installs what attnc needs to build and test on Debian 12: LLVM/MLIR 22,
# clang-22 (libFuzzer), clang-format-22 (scripts/check-format.sh), CMake, Ninja, ccache, GoogleTest, and numpy for the
# float64 reference of the end-to-end tests; pytest and venv for the Python
# package's tests (python/tests, and its install check in a virtual
# environment). Safe to run again.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake ninja-build ccache git \
  llvm-22-dev libmlir-22-dev mlir-22-tools llvm-22-tools clang-22 lld-22 clang-format-22 \
  libclang-rt-22-dev libgtest-dev libopenblas-dev \
  zlib1g-dev libzstd-dev libxml2-dev liblzma-dev libicu-dev \
  python3 python3-numpy python3-pytest python3-venv >/dev/null
echo "install-deps: done"
