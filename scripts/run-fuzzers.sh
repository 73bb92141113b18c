#!/bin/sh
# Run every libFuzzer target of a -Dfuzzing=true build for SECONDS each, starting
# from the committed corpus (copied, so new inputs do not dirty the tree).
# A crash leaves its input in the current directory and exits non-zero; add
# such inputs to fuzz/corpus/<target>/ together with the fix.
set -eu
build=${1:?usage: run-fuzzers.sh BUILD_DIR [SECONDS]}
secs=${2:-60}
top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/cta-fuzz-XXXXXX)
trap 'rm -rf "$work"' EXIT
status=0
# Every target fuzz/meson.build declares has a corpus directory of its name: run each
# one found there, so a new target cannot be left out of the campaign.
targets=$(cd "$top/fuzz/corpus" && ls)
[ -n "$targets" ] || { echo "run-fuzzers: no corpus under $top/fuzz/corpus" >&2; exit 2; }
for t in $targets; do
        bin="$build/fuzz/$t"
        [ -x "$bin" ] || { echo "run-fuzzers: $bin is missing (meson setup -Dfuzzing=true)" >&2; exit 2; }
        mkdir -p "$work/$t"
        cp -r "$top/fuzz/corpus/$t/." "$work/$t/" 2>/dev/null || true
        echo "== $t: ${secs}s"
        dict=""
        case $t in mig_*) ;; *) dict="-dict=$top/fuzz/packet.dict" ;; esac
        # shellcheck disable=SC2086 # (an empty $dict is no argument)
        if ! "$bin" -max_total_time="$secs" $dict -max_len=65536 \
                -print_final_stats=1 "$work/$t" 2>"$work/$t.log"; then
                tail -40 "$work/$t.log"
                status=1
        else
                grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$work/$t.log" || true
        fi
done
exit $status
