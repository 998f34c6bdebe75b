#!/bin/sh
# smoke.sh FUZZER SEEDS WORK [DICT]: runs a fuzzer (fuzz_frontend, fuzz_desc, the checkpoint
# parsers') on a fresh copy of the seed corpus SEEDS in WORK (the build directory's, so the source
# tree stays untouched). Exits 77 (CTest: skipped) when FUZZER is "none" or missing: the fuzzer
# needs clang's libFuzzer runtime (Debian: libclang-rt-19-dev). A crash, leak, sanitizer report,
# internal error or an input that runs for 30 seconds (a hang: inputs take milliseconds; the limit
# leaves room for a loaded machine, so that only a real hang fails) fails, with the input saved as
# WORK/artifacts/crash-* (re-run it: FUZZER WORK/artifacts/crash-*).
#
# The suite's run is a smoke test, the same every time: 20 seconds from seed 1, so that a failure
# is the code's and reproduces. A campaign that looks further sets MLK_FUZZ_SECONDS and
# MLK_FUZZ_SEED (0: a new seed each run) and runs this script itself (CTest stops a test at 120 s):
#   MLK_FUZZ_SECONDS=600 MLK_FUZZ_SEED=0 sh tests/fuzz/smoke.sh \
#     build/tests/fuzz_desc/fuzz_desc tests/fuzz/desc_corpus /tmp/fuzz_desc
# A crash it finds, once fixed, joins SEEDS, so that every later smoke run replays it.
set -u
fuzzer=$1 seeds=$2 work=$3 dict=${4:-}
seconds=${MLK_FUZZ_SECONDS:-20} seed=${MLK_FUZZ_SEED:-1}
if [ ! -x "$fuzzer" ]; then
  echo "SKIP: the fuzzer was not built: clang's libFuzzer runtime is missing (install libclang-rt-19-dev, then re-run cmake)"
  exit 77
fi
rm -rf "$work/corpus" && mkdir -p "$work/corpus" "$work/artifacts" || exit 2
cp "$seeds"/* "$work/corpus/" || exit 2
exec "$fuzzer" -seed="$seed" -max_total_time="$seconds" -timeout=30 -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" ${dict:+-dict="$dict"} "$work/corpus"
