#!/bin/sh
# setup.sh: installs what mlkc needs to build and test, from Debian packages, when it is missing.
# Idempotent and quiet when everything is there. Needs root or sudo to install.
#   LLVM 19 (llvm-19-dev, and clang-19 to compile device tiles), FileCheck (llvm-19-tools),
#   libFuzzer and the sanitizer runtimes for clang (libclang-rt-19-dev),
#   Jansson for the JSON of checkpoints (libjansson-dev, whose libjansson.a libmlkrt links),
#   re2c, lemon, cmake, ninja, pkg-config (the install test builds a program with it),
#   Open MPI's mpirun (openmpi-bin: a test launches the ranks of a world with it);
#   the CUDA toolkit is looked up under $CUDA_HOME or /usr/local/cuda.
set -eu

missing=""
need() { # need PACKAGE TEST...
  pkg=$1; shift
  if ! "$@" >/dev/null 2>&1; then missing="$missing $pkg"; fi
}
need llvm-19-dev test -f /usr/lib/llvm-19/include/llvm-c/Core.h
need clang-19 command -v clang-19
need llvm-19-tools test -x /usr/lib/llvm-19/bin/FileCheck
need libclang-rt-19-dev test -f /usr/lib/llvm-19/lib/clang/19/lib/linux/libclang_rt.fuzzer-x86_64.a
need libjansson-dev test -f /usr/include/jansson.h
need re2c command -v re2c
need lemon command -v lemon
need cmake command -v cmake
need ninja-build command -v ninja
need pkg-config command -v pkg-config
need openmpi-bin command -v mpirun
need gcc command -v gcc
need make command -v make

if [ -n "$missing" ]; then
  echo "setup: installing$missing"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  # shellcheck disable=SC2086
  $sudo apt-get install -y -q --no-install-recommends $missing
fi

cuda=${CUDA_HOME:-/usr/local/cuda}
if [ -f "$cuda/include/cuda.h" ]; then
  if [ ! -x "$cuda/bin/ptxas" ]; then
    echo "setup: note: $cuda has cuda.h but no bin/ptxas: PTX assembly tests will be skipped"
  fi
else
  echo "setup: note: no CUDA toolkit under $cuda (set CUDA_HOME): building without the GPU backend;"
  echo "       the CPU simulator and every other test still run"
fi
