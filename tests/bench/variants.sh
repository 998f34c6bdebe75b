#!/bin/sh
# variants.sh: bench/decode/variants.sh's refusals, which need no build: a patch that does not apply
# to HEAD and a path with no patch are each reported by name with exit status 1, no binary is
# written, and no worktree is left behind. (Its build of a patch that applies takes a configure
# and a build of decode_bench; the candidates of bench/decode/candidates were built with it.)
#   variants.sh DECODE_BENCH_TINY PYTHON SOURCE_DIR
set -u
src=$3
git -C "$src" rev-parse --git-dir > /dev/null 2>&1 || { echo "SKIP: $src is not a git checkout"; exit 77; }
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
fail=0
before=$(git -C "$src" worktree list | wc -l)
cat > "$dir/stale.patch" <<'PATCH'
A change to a line this tree does not have.

diff --git a/README.md b/README.md
--- a/README.md
+++ b/README.md
@@ -1,1 +1,1 @@
-no such line in this tree
+nor this one
PATCH
(cd "$src" && sh bench/decode/variants.sh "$dir/out" "$dir/stale.patch" "$dir/none.patch") \
  > "$dir/log" 2>&1 && { cat "$dir/log"; echo "FAIL: exit status 0"; fail=1; }
grep -q "stale.patch does not apply to HEAD" "$dir/log" ||
  { cat "$dir/log"; echo "FAIL: the stale patch not named"; fail=1; }
grep -q "no patch at $dir/none.patch" "$dir/log" ||
  { cat "$dir/log"; echo "FAIL: the missing patch not named"; fail=1; }
[ -z "$(ls "$dir/out")" ] || { ls "$dir/out"; echo "FAIL: a binary was written"; fail=1; }
after=$(git -C "$src" worktree list | wc -l)
[ "$after" -eq "$before" ] || { git -C "$src" worktree list; echo "FAIL: a worktree was left"; fail=1; }
[ $fail -eq 0 ] && echo "ok: variants.sh"
exit $fail
