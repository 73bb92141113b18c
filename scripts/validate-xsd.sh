#!/bin/sh
# Validate reply packets against the vendor protocol 4.0.0 schemas.
#
#   validate-xsd.sh [--schema ALL.XSD] [--gen PROGRAM] [FILE...]
#
# Each FILE is one frame as sent on the wire; its trailing NUL (and anything
# after it) is stripped before xmllint sees it. With --gen, PROGRAM is run
# with a fresh directory as its only argument and every *.xml it writes
# there is validated too. Exit 0 = all valid, 1 = some invalid, 77 = skipped
# (no xmllint or no schema), 2 = usage.
set -u

schema=${CTA_XSD:-/work/shared/xsd/all.xsd}
gen=
while [ $# -gt 0 ]; do
        case $1 in
        --schema) schema=$2; shift 2 ;;
        --gen) gen=$2; shift 2 ;;
        --) shift; break ;;
        -*) echo "usage: $0 [--schema XSD] [--gen PROGRAM] [FILE...]" >&2; exit 2 ;;
        *) break ;;
        esac
done

if ! command -v xmllint >/dev/null 2>&1; then
        echo "xmllint not found: skipping" >&2
        exit 77
fi
if [ ! -r "$schema" ]; then
        echo "$schema: schema not readable: skipping" >&2
        exit 77
fi

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

if [ -n "$gen" ]; then
        "$gen" "$tmp/gen" || { echo "$gen failed" >&2; exit 1; }
        for f in "$tmp"/gen/*.xml; do
                [ -e "$f" ] && set -- "$@" "$f"
        done
fi
if [ $# -eq 0 ]; then
        echo "no files to validate" >&2
        exit 2
fi

fail=0
n=0
for f in "$@"; do
        n=$((n + 1))
        doc="$tmp/doc.xml"
        # Everything up to the first NUL is the document (GNU head -z).
        head -z -n 1 "$f" | tr -d '\000' >"$doc"
        # The vendor schemas import each other through paths that do not
        # exist here; all.xsd already imports every namespace, so those
        # "failed to load" warnings are noise.
        out=$(xmllint --noout --nonet --schema "$schema" "$doc" 2>&1 |
                grep -v -e 'failed to load external entity' -e 'Schemas parser warning' \
                        -e 'Skipping the import')
        case $out in
        *" validates") echo "ok   $f" ;;
        *)
                echo "FAIL $f"
                printf '%s\n' "$out" | sed "s|$doc|$f|g"
                fail=1
                ;;
        esac
done
echo "$n file(s) checked"
exit $fail
