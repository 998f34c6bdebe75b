#!/bin/sh
# variants.sh: decode_bench builds of candidate changes, as compare.sh's EXTRA sides. Each PATCH (a
# unified diff against this tree, as `git diff` writes it; text before its first "diff --git" is
# its description) is applied to a clean worktree of HEAD, configured and built as ./build is
# (Ninja, RelWithDebInfo), and its decode_bench stripped into OUT/decode_bench.NAME (NAME: the
# patch's file name without .patch). A change measured this way runs as it would land: a launch-time
# knob instead costs the path it sits in (a constant load, a branch, another register allocation
# of the interpreter: 2.6% at batch 1 and 6.7% at batch 4 at its defaults, docs/performance.md,
# twenty-fourth session). Here, from the repository root (LLVM needed; ~2 minutes a patch):
#
#   sh bench/decode/variants.sh build-device/cmp bench/decode/candidates/*.patch
#
# then on the GPU machine, with build-device/ carried:
#
#   EXTRA="build-device/cmp/decode_bench.NAME ..." sh bench/decode/compare.sh BASE NEW OUT
#
# Exit status 1 when a patch does not apply or its build fails (the build's log is shown); the
# worktree is removed either way.
set -u
out=${1:?usage: variants.sh OUT PATCH...}
shift
[ $# -gt 0 ] || { echo "usage: variants.sh OUT PATCH..." >&2; exit 2; }
root=$(git rev-parse --show-toplevel) || exit 1
mkdir -p "$out" || exit 1
out=$(cd "$out" && pwd)
rc=0
for p in "$@"; do
  [ -f "$p" ] || { echo "variants.sh: no patch at $p" >&2; rc=1; continue; }
  patch=$(cd "$(dirname "$p")" && pwd)/$(basename "$p")
  name=$(basename "$p" .patch)
  tmp=$(mktemp -d) || exit 1
  wt=$tmp/tree
  if ! git -C "$root" worktree add -q --detach "$wt" HEAD; then
    echo "variants.sh: no worktree for $name" >&2
    rm -rf "$tmp"
    rc=1
    continue
  fi
  if ! git -C "$wt" apply "$patch"; then
    echo "variants.sh: $p does not apply to HEAD ($(git -C "$root" rev-parse --short HEAD))" >&2
    rc=1
  elif ! { cmake -S "$wt" -B "$wt/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
           ninja -C "$wt/build" decode_bench; } > "$tmp/build.log" 2>&1; then
    tail -30 "$tmp/build.log"
    echo "variants.sh: the build of $name failed" >&2
    rc=1
  else
    strip -o "$out/decode_bench.$name" "$wt/build/examples/decode_bench" &&
      echo "variants.sh: $out/decode_bench.$name"
  fi
  git -C "$root" worktree remove --force "$wt"
  rm -rf "$tmp"
done
exit $rc
