#!/bin/sh
# check_agrees.sh: mlkc --check and the full compile agree on every .mlk file under some folders.
#
#   check_agrees.sh MLKC ROOT DIR...
#
# For each .mlk under ROOT/DIR (CTest runs it for examples, stdlib and each folder of tests, in
# parallel), runs `MLKC --check FILE` and the
# full compile `MLKC -O0 FILE -o TMP/out` (PTX for both targets and the C API), both in FILE's
# directory with the options of FILE's .flags or its directory's golden.flags, as tests/golden.sh
# does. They agree when both succeed, or both fail with the same first error line. A file that
# defines several models is compiled once per model (--model=NAME), in order, and the first
# compile that fails stands for it; one that defines none (a module, such as stdlib/nn.mlk) has
# nothing to compile: its full compile must say so and nothing else.
#
# The compile runs LLVM at -O0 (a file's flags may say otherwise): what is checked is that the
# front end, the graph passes and the code generator accept what --check accepts; LLVM's optimizer
# at -O3 took about half of each compile; the codegen, simulator and GPU tests compile at -O3.
#
# ALLOW lists the files expected to disagree for a reason outside the compiler, each with it. It is
# empty: every file of the repository agrees.
#
# Prints each disagreement and "N/M files agree"; exits 1 on any disagreement.
set -u

if [ $# -lt 3 ]; then
  echo "usage: check_agrees.sh MLKC ROOT DIR..." >&2
  exit 2
fi
mlkc=$1 root=$2
shift 2
dirs=
for d in "$@"; do
  dirs="$dirs $root/$d"
done
case $mlkc in /*) ;; *) mlkc=$(pwd)/$mlkc ;; esac
ALLOW=""

tmp=$(mktemp -d "${TMPDIR:-/tmp}/check_agrees.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT

# The first error line of a captured stderr, or nothing.
first_error() { grep -m1 ': error: ' "$1"; }

total=0 bad=0 seen=
# shellcheck disable=SC2086 # the folders are words
for file in $(find $dirs -name '*.mlk' | sort); do
  total=$((total + 1))
  # a copy of a file already walked (the fuzz corpus holds some) says nothing new
  sum=$(cksum <"$file" | tr ' ' '-')
  case " $seen " in *" $sum "*) continue ;; esac
  seen="$seen $sum"
  case " $ALLOW " in *" ${file#"$root"/} "*) continue ;; esac
  dir=$(dirname "$file") base=$(basename "$file")
  flags=
  for f in "$dir/${base%.mlk}.flags" "$dir/golden.flags"; do
    if [ -f "$f" ]; then
      flags=$(grep -v '^#' "$f")
      break
    fi
  done
  # shellcheck disable=SC2086 # flags are words
  (cd "$dir" && exec "$mlkc" $flags --check "$base") >/dev/null 2>"$tmp/check"
  check=$?
  models=$(sed -n 's/^[[:space:]]*model[[:space:]]\{1,\}\([A-Za-z_][A-Za-z_0-9]*\).*/\1/p' "$file")
  # the full compile: once, or once per model (in the file's order) when there are several; the
  # first that fails stands for the file
  set -- ""
  [ "$(echo "$models" | grep -c .)" -gt 1 ] && set -- $models
  compile=0 which=
  for model in "$@"; do
    opt=
    [ -n "$model" ] && opt=--model=$model
    # shellcheck disable=SC2086
    (cd "$dir" && exec "$mlkc" -O0 $flags $opt "$base" -o "$tmp/out") >/dev/null 2>"$tmp/compile"
    compile=$?
    which=$model
    [ "$compile" -ne 0 ] && break
  done
  why=
  if [ "$check" -eq 0 ] && [ "$compile" -ne 0 ]; then
    if [ -z "$models" ] && grep -q "^mlkc: error: .* defines no model$" "$tmp/compile" &&
       [ "$(grep -c ': error: ' "$tmp/compile")" -eq 1 ]; then
      continue # a module: nothing to compile
    fi
    why="--check succeeds, the compile fails"
  elif [ "$check" -ne 0 ] && [ "$compile" -eq 0 ]; then
    why="--check fails, the compile succeeds"
  elif [ "$check" -ne 0 ] && [ "$(first_error "$tmp/check")" != "$(first_error "$tmp/compile")" ]; then
    why="their first errors differ"
  fi
  if [ -n "$why" ]; then
    bad=$((bad + 1))
    echo "DISAGREE: ${file#"$root"/}${which:+ (model $which)}: $why"
    echo "--- mlkc --check:"
    cat "$tmp/check"
    echo "--- mlkc (compile):"
    cat "$tmp/compile"
  fi
done
echo "$((total - bad))/$total files agree"
[ "$bad" -eq 0 ]
