#!/bin/sh
# Install the Debian 12 packages ctagent needs to build and test, if missing.
# Idempotent: does nothing (and needs no network) when all are present.
set -eu

PKGS="build-essential meson ninja-build pkg-config clang libclang-rt-14-dev
libxml2-dev libxml2-utils libssl-dev openssl libsqlite3-dev sqlite3 libpam0g-dev
libpam-runtime lxc lxc-dev busybox-static iproute2 iputils-ping bridge-utils
python3 python3-pytest passwd libxxhash-dev libzstd-dev acl attr"

missing=""
for p in $PKGS; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
                missing="$missing $p"
        fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
        echo "install-deps: missing packages:$missing" >&2
        echo "install-deps: run 'sudo make deps' (or as root) to install them" >&2
        exit 1
fi
echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
