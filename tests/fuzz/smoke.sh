#!/bin/sh
# smoke.sh FUZZER SEEDS WORK [DICT]: runs a fuzzer (fuzz_frontend, fuzz_desc, the checkpoint
# parsers') for 20 seconds on a fresh copy of the seed corpus SEEDS in WORK (the build directory's,
# so the source tree stays untouched). Exits 77 (CTest: skipped) when FUZZER is "none" or missing:
# the fuzzer needs clang's libFuzzer runtime (Debian: libclang-rt-19-dev). A crash, leak,
# sanitizer report, internal error or an input that runs for 30 seconds (a hang: inputs take
# milliseconds; the limit leaves room for a loaded machine, so that only a real hang fails) fails,
# with the input saved as WORK/artifacts/crash-* (re-run it: FUZZER WORK/artifacts/crash-*).
set -u
fuzzer=$1 seeds=$2 work=$3 dict=${4:-}
if [ ! -x "$fuzzer" ]; then
  echo "SKIP: the fuzzer was not built: clang's libFuzzer runtime is missing (install libclang-rt-19-dev, then re-run cmake)"
  exit 77
fi
rm -rf "$work/corpus" && mkdir -p "$work/corpus" "$work/artifacts" || exit 2
cp "$seeds"/* "$work/corpus/" || exit 2
exec "$fuzzer" -max_total_time=20 -timeout=30 -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" ${dict:+-dict="$dict"} "$work/corpus"
