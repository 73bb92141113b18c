#!/bin/sh
# Time ctagent's engine and tar pipes into a FRESH ext4 (loop image) each, so that ext4's
# "recently deleted inodes" slowdown on this machine (docs: platform notes) does not skew
# the comparison. Root only. Usage: bench/fresh-fs.sh BUILD_DIR SRC_TREE
set -eu
build=$1 src=$2
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
"$build/src/migrate/cta-mig-bench" --copy-only "$src" "$mnt"
fresh
/usr/bin/time -f "tar --sparse --xattrs --acls: %e s, peak RSS %M KiB" sh -c \
    "mkdir '$mnt/tar' && tar -C '$src' --sparse --xattrs --acls --numeric-owner -cf - . | tar -C '$mnt/tar' --xattrs --acls --numeric-owner -xpf -"
fresh
/usr/bin/time -f "tar -cf - | tar -xf -: %e s, peak RSS %M KiB" sh -c \
  "mkdir '$mnt/tar' && tar -C '$src' -cf - . | tar -C '$mnt/tar' -xf -"
umount "$mnt"; rm -f "$img"
