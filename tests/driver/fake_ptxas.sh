#!/bin/sh
# fake_ptxas.sh: a stand-in for the CUDA toolkit's ptxas in the tests of mlkc --cubin (MLKC_PTXAS
# points at it). It checks that it was asked for sm_90a and given a PTX file, then writes a small
# "cubin" (the bytes 0 1 2 ... 255 and the marker line) to the -o path. With FAKE_PTXAS_FAIL set
# it prints an assembler-style error and fails instead.
out= arch= in=
while [ $# -gt 0 ]; do
  case $1 in
    -o) out=$2; shift ;;
    -arch=*) arch=${1#-arch=} ;;
    *) in=$1 ;;
  esac
  shift
done
if [ -n "${FAKE_PTXAS_FAIL:-}" ]; then
  echo "ptxas fatal   : Unresolved extern function 'mlk_missing' in $in"
  exit 255
fi
[ "$arch" = sm_90a ] || { echo "fake ptxas: -arch=$arch, expected sm_90a"; exit 2; }
grep -q '^\.target sm_90a' "$in" || { echo "fake ptxas: $in is no sm_90a PTX"; exit 2; }
i=0
bytes=
while [ $i -lt 256 ]; do bytes="$bytes\\$(printf %o $i)"; i=$((i + 1)); done
{ printf "$bytes"; echo "FAKE CUBIN"; } > "$out"
