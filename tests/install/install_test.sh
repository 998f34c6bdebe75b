#!/bin/sh
# install_test.sh: an installed mlkc serves a program outside the source tree. Installs the build
# into a temporary prefix and checks the layout and the installed mlkc's stdlib, then builds the
# tutorial's program (examples/tutorial), compiling tiny.mlk with the installed mlkc each time:
# as a CMake project with find_package(mlkc), and with pkg-config and plain cc (against
# libmlkrt.so, and against libmlkrt.a), and runs each on the CPU simulator. Then the installed
# mlk-run generates from a tiny checkpoint that CKPTGEN writes (tests/run/test_mlk_run.c), with the
# installed model family, before and after the prefix moves.
#
# Usage: install_test.sh BUILD SOURCE WORK LIBDIR INCLUDEDIR STDLIBDIR CMAKE GENERATOR CC
#                        PKG_CONFIG JANSSON_IN_ARCHIVE(0|1) SHARED(0|1) FLAGS [CKPTGEN]
# (the install directories relative to the prefix; FLAGS go to every compile and link).
set -eu
build=$1 src=$2 work=$3 libdir=$4 includedir=$5 stdlibdir=$6 cmake=$7 generator=$8 cc=$9
shift 9
pc=$1 jansson_in_archive=$2 shared=$3 flags=${4:-} ckptgen=${5:-}

fail() {
  echo "FAIL: $*"
  exit 1
}
# run_app NAME PROGRAM: runs PROGRAM on the simulator and checks what it prints.
run_app() {
  out=$(MLK_BACKEND=cpu "$2" 2>&1) || fail "$1: $2 failed: $out"
  echo "$1: $out"
  echo "$out" | grep -Eq '^CPU simulator.*: y\[0\] = [0-9.-]+$' || fail "$1: unexpected output"
}
# logged LOG COMMAND...: runs COMMAND with its output in LOG, shown if it fails.
logged() {
  log=$1
  shift
  "$@" >"$log" 2>&1 || { cat "$log"; fail "$*"; }
}

command -v "$pc" >/dev/null 2>&1 || fail "pkg-config not found: run scripts/setup.sh"
rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd -P)
prefix=$work/prefix
unset MLKC_STDLIB
logged "$work/install.log" "$cmake" --install "$build" --prefix "$prefix"

# The layout.
for f in bin/mlkc bin/mlk-run "$libdir/libmlkrt.a" "$includedir/mlk.h" "$includedir/mlk_desc.h" \
         "$stdlibdir/nn.mlk" "$stdlibdir/models/llama.mlk" "$libdir/cmake/mlkc/mlkcConfig.cmake" \
         "$libdir/cmake/mlkc/mlkcConfigVersion.cmake" "$libdir/cmake/mlkc/mlkcTargets.cmake" \
         "$libdir/pkgconfig/mlkrt.pc"; do
  [ -f "$prefix/$f" ] || fail "$f not installed"
done
if [ "$shared" = 1 ]; then
  readelf -d "$prefix/$libdir/libmlkrt.so" | grep -q 'SONAME.*\[libmlkrt\.so\.[0-9.]*\]' ||
    fail "$libdir/libmlkrt.so: no soname"
fi
echo "layout: ok"

# The installed mlkc uses the installed stdlib by default.
mlkc=$prefix/bin/mlkc
"$mlkc" --help | tr -d '\n' | grep -q "else *$prefix/$stdlibdir)" ||
  fail "the installed mlkc's default stdlib is not $prefix/$stdlibdir"
"$mlkc" --emit=ast "$src/examples/llama/llama.mlk" | grep -q "import std.nn .*file=\"$prefix/$stdlibdir/nn.mlk\"" ||
  fail "the installed mlkc did not load std.nn from $prefix/$stdlibdir"
echo "stdlib: ok"

# With CMake: find_package(mlkc) from the prefix alone.
app=$work/cmake-app
logged "$work/cmake-configure.log" "$cmake" -S "$src/examples/tutorial" -B "$app" -G "$generator" \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$flags" -DCMAKE_BUILD_TYPE=Release
grep -q "^mlkc_DIR:PATH=$prefix/$libdir/cmake/mlkc\$" "$app/CMakeCache.txt" ||
  fail "find_package(mlkc) did not find the package in $prefix"
logged "$work/cmake-build.log" "$cmake" --build "$app"
run_app cmake "$app/tutorial_app"
if [ "$jansson_in_archive" = 1 ] && readelf -d "$app/tutorial_app" | grep -Eq 'NEEDED.*(jansson|mlkrt)'; then
  fail "cmake: the program linked with mlkc::mlkrt needs a shared library of mlkc or Jansson"
fi

# With pkg-config and cc.
export PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig"
app=$work/pc-app
mkdir -p "$app"
"$mlkc" "$src/examples/tutorial/tiny.mlk" -o "$app/tiny" || fail "installed mlkc tiny.mlk"
cflags=$("$pc" --cflags mlkrt) || fail "pkg-config --cflags mlkrt"
# shellcheck disable=SC2086
$cc $flags -O2 -I"$app" $cflags -c "$src/examples/tutorial/app.c" -o "$app/app.o" || fail "cc app.c"
# shellcheck disable=SC2086
$cc $flags -O2 -I"$app" $cflags -c "$app/tiny.c" -o "$app/tiny.o" || fail "cc tiny.c"
if [ "$shared" = 1 ]; then
  # shellcheck disable=SC2086,SC2046
  $cc $flags "$app/app.o" "$app/tiny.o" $("$pc" --libs mlkrt) -o "$app/app_shared" ||
    fail "cc with pkg-config --libs mlkrt"
  readelf -d "$app/app_shared" | grep -q 'NEEDED.*libmlkrt\.so' || fail "pkg-config: app_shared does not use libmlkrt.so"
  LD_LIBRARY_PATH="$prefix/$libdir" run_app pkg-config "$app/app_shared"
fi
jansson=
[ "$jansson_in_archive" = 1 ] || jansson=-ljansson
# shellcheck disable=SC2086
$cc $flags "$app/app.o" "$app/tiny.o" "$("$pc" --variable=libdir mlkrt)/libmlkrt.a" -lpthread -ldl -lm $jansson \
  -o "$app/app_static" || fail "cc with libmlkrt.a"
run_app pkg-config-static "$app/app_static"

# mlk-run: a checkpoint directory in, ids out, with the family installed in the prefix.
# run_mlk_run PREFIX: the ids of 2 prompts, 4 steps each.
run_mlk_run() {
  out=$(MLK_BACKEND=cpu "$1/bin/mlk-run" --model "$work/ckpt" --prompt-ids 1,2,3 --prompt-ids 5 \
        --steps 4 2>"$work/mlk-run.err") || { cat "$work/mlk-run.err"; fail "mlk-run in $1"; }
  echo "$out" | grep -Eq '^[0-9]+ [0-9]+ [0-9]+ [0-9]+$' || fail "mlk-run printed '$out'"
  [ "$(echo "$out" | wc -l)" = 2 ] || fail "mlk-run printed '$out'"
  grep -q "($1/$stdlibdir/models/llama.mlk)" "$work/mlk-run.err" ||
    fail "mlk-run did not compile $1/$stdlibdir/models/llama.mlk: $(cat "$work/mlk-run.err")"
}
if [ -n "$ckptgen" ]; then
  mkdir -p "$work/ckpt"
  "$ckptgen" --write-checkpoint "$work/ckpt" >/dev/null || fail "$ckptgen --write-checkpoint"
  run_mlk_run "$prefix"
  echo "mlk-run: ok"
fi

# A moved prefix: mlkc still finds its stdlib, mlk-run its model families.
mv "$prefix" "$work/moved"
"$work/moved/bin/mlkc" --help | tr -d '\n' | grep -q "else *$work/moved/$stdlibdir)" ||
  fail "after moving the prefix, mlkc's default stdlib is not $work/moved/$stdlibdir"
[ -z "$ckptgen" ] || run_mlk_run "$work/moved"
echo "moved prefix: ok"

rm -rf "$work"
echo "install: ok"
