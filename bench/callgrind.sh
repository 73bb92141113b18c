#!/bin/sh
# bench/callgrind.sh SRC [OUTDIR]: user-space instructions per function of the tree-stream
# engine (cta-mig-bench, no TLS, no daemons), with valgrind --tool=callgrind:
#   1. a full copy of SRC into OUTDIR/dst          -> OUTDIR/copy.callgrind
#   2. 1% of SRC's small files changed (in a copy, OUTDIR/src), then an incremental pass
#      onto that earlier copy                        -> OUTDIR/incr.callgrind
# and the top functions of each. Needs the engine bench built:
#   ninja -C build src/migrate/cta-mig-bench        (CTA_BENCH_BUILD=dir for another build)
# Valgrind is ~50x slower: use a scaled data set (CTA_BENCH_SCALE=0.1 bench/mkdata small).
# Kernel time is not counted: callgrind sees what our code and the libraries execute.
set -eu
src=${1:?usage: bench/callgrind.sh SRC [OUTDIR]}
out=${2:-/var/tmp/cta-callgrind}
build=${CTA_BENCH_BUILD:-$(dirname "$0")/../build}
bench=$build/src/migrate/cta-mig-bench
[ -x "$bench" ] || { echo "build $bench first (ninja -C $build src/migrate/cta-mig-bench)" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }
rm -rf "$out" && mkdir -p "$out/dst"
# valgrind 3.19 lacks openat2: see vg-openat2.c
cc -O2 -shared -fPIC -o "$out/vg-openat2.so" "$(dirname "$0")/vg-openat2.c" -ldl
top() { callgrind_annotate --inclusive=no "$1" 2>/dev/null | grep -E '^ *[0-9,]+ \(' | head -"${2:-15}"; }

echo "== full copy of $src"
LD_PRELOAD="$out/vg-openat2.so" valgrind -q --tool=callgrind --callgrind-out-file="$out/copy.callgrind" \
        "$bench" --copy-only "$src" "$out/dst"
top "$out/copy.callgrind"

echo "== incremental pass, 1% of the small files changed"
cp -a "$src" "$out/src"
find "$out/src" -type f -size -9k | awk 'NR % 100 == 0' | while read -r f; do printf x >>"$f"; done
LD_PRELOAD="$out/vg-openat2.so" valgrind -q --tool=callgrind --callgrind-out-file="$out/incr.callgrind" \
        "$bench" --incr "$out/src" "$out/dst"
top "$out/incr.callgrind"
echo "callgrind_annotate --tree=caller $out/incr.callgrind  # who calls what"
