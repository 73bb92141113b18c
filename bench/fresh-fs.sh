#!/bin/sh
# Time ctagent's engine and tar pipes into a FRESH ext4 (loop image) each, cold cache, so
# that ext4's "recently deleted inodes" slowdown on this machine (docs: platform notes) does
# not skew the comparison. Root only.
#   Usage: bench/fresh-fs.sh BUILD_DIR SMALL_TREE [BIG_TREE]
# SMALL_TREE: e.g. made by `cta-mig-bench DIR` (BENCH_FILES=200000); BIG_TREE: made by
# `cta-mig-bench --make-big DIR` (a dense file and an 8 GiB sparse image with 1 GiB of data).
# With BIG_TREE it also times a full copy of it with block maps recorded, and the block-delta
# pass after 4 KiB changed inside the sparse image (note: that changes BIG_TREE).
set -eu
build=$1 src=$2 big=${3:-}
bench=$build/src/migrate/cta-mig-bench
img=/tmp/cta-mig-fresh.img mnt=/tmp/cta-mig-fresh.mnt
mkdir -p "$mnt"
fresh() {
        umount "$mnt" 2>/dev/null || true
        rm -f "$img"
        truncate -s 16G "$img"
        mkfs.ext4 -q -F -O ^has_journal "$img"
        mount -o loop,user_xattr,acl "$img" "$mnt"
        sync; echo 3 > /proc/sys/vm/drop_caches
}
fresh
"$bench" --copy-only "$src" "$mnt"
fresh
/usr/bin/time -f "tar --sparse --xattrs --acls: %e s, peak RSS %M KiB" sh -c \
    "mkdir '$mnt/tar' && tar -C '$src' --sparse --xattrs --acls --numeric-owner -cf - . | tar -C '$mnt/tar' --xattrs --acls --numeric-owner -xpf -"
fresh
/usr/bin/time -f "tar -cf - | tar -xf -: %e s, peak RSS %M KiB" sh -c \
  "mkdir '$mnt/tar' && tar -C '$src' -cf - . | tar -C '$mnt/tar' -xf -"
if [ -n "$big" ]; then
        bm=$(mktemp -d /tmp/cta-mig-bm.XXXXXX)
        fresh
        echo "big tree, block maps recorded on both sides:"
        BENCH_BM="$bm" "$bench" --copy-only "$big" "$mnt"
        rm -rf "$bm"
        fresh
        echo "block delta (full copy, then 4 KiB changed, then the timed second pass):"
        BENCH_COLD=1 "$bench" --delta "$big" "$mnt" "$bm"
        rm -rf "$bm"
fi
umount "$mnt"; rm -f "$img"
