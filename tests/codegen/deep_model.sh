#!/bin/sh
# deep_model.sh: a model's depth adds ops and data, never code. Compiles examples/llama/llama.mlk
# (16 layers) and the same model with 126 layers, each into one megakernel, and checks that
#   - the 126-layer model compiles (to model.h/model.c) with one kernel of 126 * 10 + 4 ops and
#     13 code variants,
#   - its PTX for sm_90a and sm_80 is the 16-layer model's, byte for byte (so it has the same
#     variants),
#   - with ptxas at hand, that PTX assembles for sm_90a (skipped without it).
# Each compile runs LLVM's codegen, slow under the sanitizers: the test compiles nothing twice.
#   sh deep_model.sh MLKC LLAMA_MLK WORKDIR [PTXAS]
set -eu
MLKC=$1 SRC=$2 DIR=$3 PTXAS=${4:-}
mkdir -p "$DIR"
sed 's/L = 16,/L = 126,/' "$SRC" > "$DIR/llama126.mlk"
grep -q 'L = 126,' "$DIR/llama126.mlk" || { echo "FAIL: could not set the layer count in $SRC"; exit 1; }
fail=0
"$MLKC" "$DIR/llama126.mlk" -o "$DIR/llama126"
ops=$(grep -c '.kind = MLK_OP_' "$DIR/llama126.c")
kernels=$(grep -c '"mlk_llama_' "$DIR/llama126.c")
# 10 ops a layer (q, k, v, the q rope, the append that rotates k, attention with its chunks'
# merge, o, gate, up, down); the embedding gather, the final norm's LM head, and the argmax split over the
# vocabulary with its reduce
[ "$ops" -eq $((126 * 10 + 4)) ] || { echo "FAIL: $ops ops, expected $((126 * 10 + 4))"; fail=1; }
[ "$kernels" -eq 1 ] || { echo "FAIL: $kernels kernel entries, expected 1"; fail=1; }
for arch in sm_90a sm_80; do
  "$MLKC" --emit=ptx --arch=$arch "$SRC" -o "$DIR/llama16.$arch.ptx"
  "$MLKC" --emit=ptx --arch=$arch "$DIR/llama126.mlk" -o "$DIR/llama126.$arch.ptx"
  cmp -s "$DIR/llama16.$arch.ptx" "$DIR/llama126.$arch.ptx" ||
    { echo "FAIL: the $arch PTX of 16 and 126 layers differs"; fail=1; }
done
v126=$(grep -o 'variant_ops_0, [0-9]*' "$DIR/llama126.c" | sed 's/.*, //')
[ "$v126" = 13 ] || { echo "FAIL: $v126 code variants, expected 13"; fail=1; }
if [ -n "$PTXAS" ] && [ -x "$PTXAS" ]; then
  "$PTXAS" -arch=sm_90a "$DIR/llama126.sm_90a.ptx" -o "$DIR/llama126.cubin" ||
    { echo "FAIL: ptxas refused the 126-layer PTX"; fail=1; }
else
  echo "(no ptxas: not assembled)"
fi
[ $fail -eq 0 ] && echo "ok: 126 layers, $ops ops in one megakernel, $v126 code variants, the same PTX as 16 layers"
exit $fail
