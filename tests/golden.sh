#!/bin/sh
# golden.sh: runs mlkc on one file and compares what it prints with an expected file.
#
#   golden.sh MLKC MODE FILE EXPECTED
#
# MODE tokens or ast: runs `MLKC --emit=MODE FILE`, which must succeed without a word on stderr,
# and compares its stdout with EXPECTED. MODE err: runs `MLKC --emit=ast FILE`, which must exit
# with status 1, and compares its stderr with EXPECTED. MODE check: the same through every pass up to
# lowering (`MLKC --emit=graph FILE`), for semantic errors. mlkc runs in FILE's directory, so the
# paths in its messages are the bare file name. On a mismatch prints a unified diff (- expected,
# + actual) and exits 1.
#
# Extra mlkc options (say `--stdlib=modules/std -I modules`, so that imports resolve inside the
# test folder and messages show relative paths) come from CASE.flags next to FILE, else from
# golden.flags in FILE's directory: words separated by white space, `#` lines ignored.
#
# With MLK_GOLDEN_UPDATE=1 in the environment, writes the actual output to EXPECTED instead
# (review the change with git diff before committing it).
set -u

if [ $# -ne 4 ]; then
  echo "usage: golden.sh MLKC tokens|ast|err|check FILE EXPECTED" >&2
  exit 2
fi
mlkc=$1 mode=$2 file=$3 expected=$4
case $mlkc in /*) ;; *) mlkc=$(pwd)/$mlkc ;; esac
case $expected in /*) ;; *) expected=$(pwd)/$expected ;; esac
case $mode in
  tokens | ast) emit=$mode ;;
  err) emit=ast ;;
  check) emit=graph ;;
  *)
    echo "golden.sh: unknown mode '$mode' (tokens, ast, err, check)" >&2
    exit 2
    ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/golden.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
dir=$(dirname "$file")
base=$(basename "$file")
flags=
for f in "$dir/${base%.mlk}.flags" "$dir/golden.flags"; do
  if [ -f "$f" ]; then
    flags=$(grep -v '^#' "$f")
    break
  fi
done
# shellcheck disable=SC2086 # flags are words
(cd "$dir" && exec "$mlkc" $flags --emit="$emit" "$base") >"$tmp/stdout" 2>"$tmp/stderr"
status=$?

fail() {
  echo "FAIL: $file ($mode): $*"
  for f in stdout stderr; do
    if [ -s "$tmp/$f" ]; then
      echo "--- $f:"
      cat "$tmp/$f"
    fi
  done
  exit 1
}

if [ "$mode" = err ] || [ "$mode" = check ]; then
  [ $status -eq 1 ] || fail "mlkc exited with status $status, expected 1"
  actual=$tmp/stderr
else
  [ $status -eq 0 ] || fail "mlkc exited with status $status, expected 0"
  [ -s "$tmp/stderr" ] && fail "mlkc wrote to stderr"
  actual=$tmp/stdout
fi

if [ "${MLK_GOLDEN_UPDATE:-0}" = 1 ]; then
  cp "$actual" "$expected" || exit 2
  echo "updated $expected"
  exit 0
fi
if ! cmp -s "$expected" "$actual"; then
  echo "FAIL: $file: --emit=$emit output differs from $expected (- expected, + actual):"
  diff -u "$expected" "$actual"
  exit 1
fi
exit 0
