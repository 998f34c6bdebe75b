#!/bin/sh
# depth_bench.sh: what a model's depth costs the compiler. For Llama-architecture models of 2, 16
# and 126 layers (examples/llama/llama.mlk with its layer count changed), each compiled into one
# megakernel: mlkc's wall time (source to model.c, PTX for sm_90a and sm_80), the sizes of the
# generated C and of the sm_90a PTX, the code variants, and ptxas -v on that PTX: its time, the
# kernel's registers and the spill stores of every function summed. Times are CPU seconds (user +
# system, from /usr/bin/time), which a loaded machine disturbs less than wall time.
#
#   sh bench/depth_bench.sh [MLKC] [PTXAS] [LAYERS...]
#
# Defaults: build/compiler/mlkc, ptxas from $CUDA_HOME/bin or /usr/local/cuda/bin, layers 2 16 126.
# A benchmark, not a test: it prints a table and checks nothing.
set -eu
MLKC=${1:-build/compiler/mlkc}
PTXAS=${2:-${CUDA_HOME:-/usr/local/cuda}/bin/ptxas}
[ $# -ge 2 ] && shift 2 || shift $#
LAYERS=${*:-2 16 126}
SRC=$(dirname "$0")/../examples/llama/llama.mlk
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# cpu_s FILE CMD...: runs CMD, writes its CPU seconds (user + system) to FILE.
cpu_s() {
  out=$1
  shift
  /usr/bin/time -f '%U %S' -o "$out.t" "$@"
  awk '{printf "%.2f", $1 + $2}' "$out.t" > "$out"
}
printf '%-7s %-6s %-7s %-11s %-7s %-9s %-8s %-5s %s\n' layers ops mlkc_s model.c_KB ptx_KB variants ptxas_s regs spill_stores_B
for L in $LAYERS; do
  sed "s/L = 16,/L = $L,/" "$SRC" > "$TMP/llama$L.mlk"
  cpu_s "$TMP/mlkc$L" "$MLKC" "$TMP/llama$L.mlk" -o "$TMP/llama$L"
  "$MLKC" --emit=ptx --arch=sm_90a "$TMP/llama$L.mlk" -o "$TMP/llama$L.ptx"
  ops=$(grep -c '.kind = MLK_OP_' "$TMP/llama$L.c" || true)
  variants=$(grep -o 'variant_ops_0, [0-9]*' "$TMP/llama$L.c" | sed 's/.*, //')
  cbytes=$(wc -c < "$TMP/llama$L.c")
  pbytes=$(wc -c < "$TMP/llama$L.ptx")
  if [ -x "$PTXAS" ]; then
    cpu_s "$TMP/ptxas_s$L" sh -c '"$1" -v -arch=sm_90a "$2" -o "$3" 2> "$4"' -- "$PTXAS" \
      "$TMP/llama$L.ptx" "$TMP/llama$L.cubin" "$TMP/ptxas$L.log"
    ptxas_s=$(cat "$TMP/ptxas_s$L")
    regs=$(grep -A3 'entry function' "$TMP/ptxas$L.log" | grep -o 'Used [0-9]* registers' | head -1 | grep -o '[0-9][0-9]*')
    spills=$(grep -o '[0-9]* bytes spill stores' "$TMP/ptxas$L.log" | awk '{s += $1} END {print s + 0}')
  else
    ptxas_s=- regs=- spills=-
  fi
  printf '%-7s %-6s %-7s %-11d %-7d %-9s %-8s %-5s %s\n' "$L" "$ops" "$(cat "$TMP/mlkc$L")" \
    $((cbytes / 1024)) $((pbytes / 1024)) "$variants" "$ptxas_s" "$regs" "$spills"
done
