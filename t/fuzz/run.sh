#!/bin/sh
# t/fuzz/run.sh TARGET [SECONDS [libFuzzer options ...]]
#
# Coverage-guided fuzzing of one harness, t/fuzz/fuzz_TARGET.c, with
# libFuzzer under AddressSanitizer + UBSan.  The harness is built from the
# same sources as its corpus replay in `make check` (t/fuzz/replay_TARGET in
# Makefile.am), in a clang build of a copy of the tree, so a harness needs
# no build rule of its own.
#
#   t/fuzz/run.sh manifest 600            # ten minutes, one core
#   t/fuzz/run.sh manifest 0 -runs=1000   # options go to libFuzzer
#
# New inputs go to $FUZZ_WORK/TARGET (default /tmp/certsuite-fuzz/work);
# the committed corpus t/fuzz/corpus/TARGET is only read; t/fuzz/TARGET.dict
# is used when it exists.  Crashes land in $FUZZ_WORK as crash-<sha1>.
# Add a regression input to t/fuzz/corpus/TARGET for each finding.
set -eu

target=${1:?usage: t/fuzz/run.sh TARGET [SECONDS [libFuzzer options]]}
seconds=${2:-600}
[ $# -ge 2 ] && shift 2 || shift $#

src=$(cd "$(dirname "$0")/../.." && pwd)
base=${FUZZ_WORK:-/tmp/certsuite-fuzz}
build=$base/build
work=$base/work/$target

[ -f "$src/t/fuzz/fuzz_$target.c" ] || {
    echo "run.sh: no harness t/fuzz/fuzz_$target.c" >&2
    exit 1
}
command -v clang >/dev/null || { echo "run.sh: needs clang" >&2; exit 1; }

# A copy of the tree (tracked and untracked-but-not-ignored files), kept
# between runs; configured once with clang.
mkdir -p "$build" "$work"
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$src" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -)
else
    (cd "$src" && find . -path ./.git -prune -o -type f -print0 \
        | tar --null -T - -cf -)
fi | tar -C "$build" -xf -
if [ ! -f "$build/Makefile" ]; then
    (cd "$build" && ./autogen.sh >/dev/null 2>&1 \
        && ./configure CC=clang >/dev/null)
fi
make -C "$build" -s "t/fuzz/replay_$target" CPPFLAGS=-DFUZZ_LIBFUZZER \
    SANITIZE_CFLAGS='-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer'
bin=$base/fuzz_$target
cp "$build/t/fuzz/replay_$target" "$bin"

dict=
[ -f "$src/t/fuzz/$target.dict" ] && dict=-dict=$src/t/fuzz/$target.dict
cd "$work"
exec "$bin" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$work/" ${dict:+"$dict"} "$@" \
    "$work" "$src/t/fuzz/corpus/$target"
