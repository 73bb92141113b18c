#!/bin/bash
# make demo: two ctagentd nodes on loopback, and a running busybox container
# moved from one to the other with `ctagent migrate`.
#
#   ./scripts/demo.sh [BUILD_DIR]        (as root; `make demo` builds first)
#
# Everything it makes is its own and removed again, at the end and (after an
# interrupted run) at the start: the nodes' state under /tmp/ctagent-demo, the
# user and group ctagent-demo, /etc/pam.d/ctagent-demo, the bridges
# ctabr-demoa and ctabr-demob with their containers and cgroups. Your own
# ~/.config/ctagent/known_nodes, /etc/pam.d/ctagent and group ctagent are not
# touched. CTAGENT_DEMO_KEEP=1 leaves the nodes running at the end to look
# around (the next run cleans up).
set -euo pipefail

BUILD=${1:-build}
DEMO=/tmp/ctagent-demo
DEMO_USER=ctagent-demo
DEMO_GROUP=ctagent-demo
PAM_NAME=ctagent-demo
PAM_FILE=/etc/pam.d/$PAM_NAME
NODES="a b"
declare -A HOST=([a]=127.0.0.11 [b]=127.0.0.12)
declare -A BRIDGE=([a]=ctabr-demoa [b]=ctabr-demob)
declare -A BRIDGE_CIDR=([a]=10.200.251.1/24 [b]=10.200.252.1/24)
CT_NAME=demo-web
CT_IP=10.200.251.10      # on node A's bridge
CT_IP_B=10.200.252.10    # its address on node B's bridge, set after the move
DATA_MB=1024             # random data in the container, so the copy takes a moment

SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
T0=$(date +%s.%N)

# ---- output ------------------------------------------------------------------

if [ -t 1 ]; then
        C_BOLD=$'\e[1m' C_DIM=$'\e[2m' C_OK=$'\e[32m' C_ERR=$'\e[31m' C_OFF=$'\e[0m'
else
        C_BOLD='' C_DIM='' C_OK='' C_ERR='' C_OFF=''
fi
section() { printf '\n%s==== %s ====%s\n' "$C_BOLD" "$*" "$C_OFF"; }
say() { printf '%s\n' "$*"; }
# Show a command as one would type it (cta and the full path as "ctagent"),
# then run it.
run() {
        local shown="" a
        for a in "$@"; do
                case "$a" in
                cta) a="ctagent -u $DEMO_USER" ;;
                "$CTAGENT") a=ctagent ;;
                *[!A-Za-z0-9_./:=@%+,-]* | "") a="'${a//\'/\'\\\'\'}'" ;;
                esac
                shown+="${shown:+ }$a"
        done
        printf '%s$ %s%s\n' "$C_DIM" "$shown" "$C_OFF"
        "$@"
}
die() {
        printf '%sdemo: %s%s\n' "$C_ERR" "$*" "$C_OFF" >&2
        exit 1
}

# ---- checks -------------------------------------------------------------------

if [ "$(id -u)" != 0 ]; then
        cat >&2 <<EOF
demo: this must run as root (try: sudo make demo).
It starts two ctagentd nodes that run real LXC containers (bridges, veths,
cgroups), and makes a throwaway login user, group and PAM service for them;
all of it is removed again when the demo ends.
EOF
        exit 1
fi
for tool in ip lxc-info lxc-stop lxc-attach useradd userdel groupadd groupdel chpasswd \
            sha256sum ping; do
        command -v "$tool" >/dev/null || die "'$tool' is missing; run 'make deps' first"
done
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || die "busybox is missing (make deps)"

bin() {
        local p
        for p in "$BUILD/$1" "$BUILD/$2"; do
                if [ -x "$p" ]; then
                        (cd "$(dirname "$p")" && echo "$(pwd -P)/$(basename "$p")")
                        return
                fi
        done
        die "no $1 under $BUILD (run 'make build' first)"
}
CTAGENTD=$(bin ctagentd src/daemon/ctagentd)
CTAGENT=$(bin ctagent src/cli/ctagent)

# ---- cleanup (also of a previous, interrupted run) -----------------------------

# The pid in FILE if it is still a ctagentd of this demo (never a recycled pid).
demo_pid() {
        local pid
        pid=$(cat "$1" 2>/dev/null) || return 1
        [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "ctagentd.*--state-dir $DEMO/" || return 1
        echo "$pid"
}

cleanup() {
        local n pid i lxcpath name id d
        for n in $NODES; do
                if pid=$(demo_pid "$DEMO/$n/pid"); then
                        kill -TERM "$pid" 2>/dev/null || true
                        for i in $(seq 50); do
                                kill -0 "$pid" 2>/dev/null || break
                                sleep 0.1
                        done
                        kill -KILL "$pid" 2>/dev/null || true
                fi
        done
        for n in $NODES; do
                lxcpath=$DEMO/$n/state/lxc
                [ -d "$lxcpath" ] || continue
                for d in "$lxcpath"/*/; do
                        name=$(basename "$d")
                        [ -f "$lxcpath/$name/config" ] || continue
                        [ "$(lxc-info -P "$lxcpath" -n "$name" -s -H 2>/dev/null)" = STOPPED ] ||
                                lxc-stop -k -P "$lxcpath" -n "$name" >/dev/null 2>&1 || true
                done
        done
        for n in $NODES; do
                ip link del "${BRIDGE[$n]}" >/dev/null 2>&1 || true
                id=$(cat "$DEMO/$n/node_id" 2>/dev/null || true)
                if [ -n "$id" ]; then
                        for d in /sys/fs/cgroup/ctagent-"$id" /sys/fs/cgroup/*/ctagent-"$id"; do
                                [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
                        done
                        for d in $(ip -o link show 2>/dev/null |
                                   sed -n "s/^[0-9]*: \(v$id\.[0-9]*\)[@:].*/\1/p"); do
                                ip link del "$d" >/dev/null 2>&1 || true
                        done
                fi
        done
        if [ -d "$DEMO" ]; then
                # Nothing may stay mounted below it before it goes.
                awk -v d="$DEMO/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r |
                        while read -r m; do umount -l "$m" 2>/dev/null || true; done
                rm -rf "$DEMO"
        fi
        if id -u "$DEMO_USER" >/dev/null 2>&1; then userdel "$DEMO_USER" 2>/dev/null || true; fi
        if getent group "$DEMO_GROUP" >/dev/null; then
                groupdel "$DEMO_GROUP" 2>/dev/null || true
        fi
        rm -f "$PAM_FILE"
}

FINISHED=0
on_exit() {
        local rc=$?
        trap - EXIT INT TERM
        if [ "$FINISHED" != 1 ]; then
                printf '\n%sdemo: stopped (exit status %s).%s\n' "$C_ERR" "$rc" "$C_OFF" >&2
                for n in $NODES; do
                        if [ -s "$DEMO/$n/ctagentd.log" ]; then
                                echo "---- last lines of node ${n^^}'s log ----" >&2
                                tail -n 15 "$DEMO/$n/ctagentd.log" >&2
                        fi
                done
        fi
        if [ "${CTAGENT_DEMO_KEEP:-}" = 1 ] && [ "$FINISHED" = 1 ]; then
                say "CTAGENT_DEMO_KEEP=1: the nodes keep running (state in $DEMO);" \
                    "the next 'make demo' removes everything."
        else
                cleanup
                if [ "$FINISHED" = 1 ]; then
                        say "${C_DIM}cleaned up: nodes stopped, $DEMO, user, group, PAM file" \
                            "and bridges removed.${C_OFF}"
                fi
        fi
        exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

section "Cleaning up leftovers of an earlier run"
cleanup
say "ok"

# ---- the administrator -----------------------------------------------------------

section "A throwaway administrator for both nodes"
PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '+/=')
groupadd --system "$DEMO_GROUP"
useradd -M -N -g "$DEMO_GROUP" -s /usr/sbin/nologin "$DEMO_USER"
printf '%s:%s\n' "$DEMO_USER" "$PASSWORD" | chpasswd
install -m 0644 "$SRC_DIR/dist/pam.d/ctagent" "$PAM_FILE"
say "user $DEMO_USER (group $DEMO_GROUP = admin_group), PAM service $PAM_FILE"

# The client's pins go to a private known_nodes, not yours.
export HOME=$DEMO/home XDG_CONFIG_HOME=$DEMO/home/.config
mkdir -p "$XDG_CONFIG_HOME"
export CTAGENT_PASSWORD=$PASSWORD CTAGENT_DST_PASSWORD=$PASSWORD

# ---- two nodes -----------------------------------------------------------------------

section "Starting node A (${HOST[a]}) and node B (${HOST[b]})"
declare -A ADDR
for n in $NODES; do
        mkdir -p "$DEMO/$n/state" "$DEMO/templates"
        cat >"$DEMO/$n/ctagentd.conf" <<EOF
# make demo: node ${n^^}
admin_group = $DEMO_GROUP
pam_service = $PAM_NAME
ct_backend = lxc
template_dir = $DEMO/templates
bridge = ${BRIDGE[$n]}
bridge_cidr = ${BRIDGE_CIDR[$n]}
EOF
        "$CTAGENTD" --foreground --config "$DEMO/$n/ctagentd.conf" --state-dir "$DEMO/$n/state" \
                --listen "${HOST[$n]}:0" --plain-listen none --ready-file "$DEMO/$n/ready" \
                </dev/null >"$DEMO/$n/ctagentd.log" 2>&1 &
        echo $! >"$DEMO/$n/pid"
done
for n in $NODES; do
        for i in $(seq 200); do
                [ -s "$DEMO/$n/ready" ] && break
                kill -0 "$(cat "$DEMO/$n/pid")" 2>/dev/null || die "node ${n^^} exited at start-up"
                sleep 0.1
        done
        [ -s "$DEMO/$n/ready" ] || die "node ${n^^} did not get ready within 20 s"
        ADDR[$n]=$(sed -n 's/^tls //p' "$DEMO/$n/ready")
        sed -n 's/.*node id \([a-z0-9]*\).*/\1/p' "$DEMO/$n/ctagentd.log" | tail -n 1 \
                >"$DEMO/$n/node_id"
        say "node ${n^^}: TLS on ${ADDR[$n]}, bridge ${BRIDGE[$n]} ${BRIDGE_CIDR[$n]}," \
            "state in $DEMO/$n/state"
done
A=${ADDR[a]}
B=${ADDR[b]}
cta() { "$CTAGENT" -u "$DEMO_USER" "$@"; }
A_ID=$(cat "$DEMO/a/node_id")
B_ID=$(cat "$DEMO/b/node_id")
if [ -z "$A_ID" ] || [ -z "$B_ID" ]; then
        die "the nodes logged no container backend (node id)"
fi

section "Talking to them (the first TLS connection pins each node's certificate)"
run "$CTAGENT" -H "$A" --no-login version
run "$CTAGENT" -H "$B" --no-login version
# Node A connects to B during the migration: give it B's pin too, so that link
# is checked against the same certificate.
grep -F "$B " "$XDG_CONFIG_HOME/ctagent/known_nodes" >>"$DEMO/a/state/known_nodes"

# ---- a container on A ----------------------------------------------------------------

section "Creating and starting a busybox container on node A"
run cta -H "$A" create --name "$CT_NAME" --hostname web.demo --ip "$CT_IP/24" --memory 256M \
        --description "made by make demo" --start
PRIV=$(cta -H "$A" info "$CT_NAME" | sed -n 's/^private: *//p')
VEID=$(cta -H "$A" info "$CT_NAME" | sed -n 's/^veid: *//p')
[ -d "$PRIV" ] || die "no private area for $CT_NAME ($PRIV)"
# Less data where /tmp is small (a tmpfs on a small machine): it exists twice
# (node A's kept copy and node B's), and node B checks for a margin.
AVAIL_MB=$(df -Pm "$DEMO" | awk 'NR == 2 { print $4 }')
while [ "$DATA_MB" -gt 16 ] && [ $((DATA_MB * 4 + 256)) -gt "${AVAIL_MB:-0}" ]; do
        DATA_MB=$((DATA_MB / 2))
done
say "writing $DATA_MB MiB of random data and a few files into its private area $PRIV"
mkdir -p "$PRIV/srv/demo"
# In files of at most 128 MiB, copies of one random chunk (quick to make).
CHUNK_MB=$((DATA_MB < 128 ? DATA_MB : 128))
head -c "$((CHUNK_MB << 20))" /dev/urandom >"$PRIV/srv/demo/blob"
for i in $(seq 2 $((DATA_MB / CHUNK_MB))); do
        cp "$PRIV/srv/demo/blob" "$PRIV/srv/demo/blob.$i"
done
echo "hello from node A, $(date -u)" >"$PRIV/srv/demo/hello.txt"
ln -s hello.txt "$PRIV/srv/demo/link"
truncate -s 1G "$PRIV/srv/demo/sparse"
setfattr -n user.demo -v migrated "$PRIV/srv/demo/hello.txt" 2>/dev/null || true
SUM_BEFORE=$(cd "$PRIV/srv/demo" && sha256sum blob hello.txt)

section "Both nodes before the migration"
say "${C_BOLD}node A:${C_OFF}"
run cta -H "$A" list
say "${C_BOLD}node B:${C_OFF}"
run cta -H "$B" list
run lxc-info -P "$DEMO/a/state/lxc" -n "cta-$A_ID-$VEID" -s -p
run ping -c 2 -W 2 "$CT_IP"

# ---- the migration -------------------------------------------------------------------------

section "Migrating $CT_NAME from node A to node B"
say "The client gets a one-time pass from node B, then asks node A to move the container"
say "there (A streams its private area to B over TLS while it runs, stops it, sends what"
say "changed meanwhile; B verifies and starts it)."
run cta -H "$A" migrate "$CT_NAME" "$B" --one-time-pass --dst-user "$DEMO_USER"

# ---- after ---------------------------------------------------------------------------------

section "After: gone from node A"
run cta -H "$A" list
say "node A kept its copy of the data, renamed (ctagent migrate --remove deletes it):"
run ls -d "$PRIV.migrated"
if lxc-info -P "$DEMO/a/state/lxc" -n "cta-$A_ID-$VEID" >/dev/null 2>&1; then
        die "the container is still defined on node A"
fi

section "After: running on node B, same eid, same data"
run cta -H "$B" list
run cta -H "$B" info "$CT_NAME"
run lxc-info -P "$DEMO/b/state/lxc" -n "cta-$B_ID-$VEID" -s -p
PRIV_B=$(cta -H "$B" info "$CT_NAME" | sed -n 's/^private: *//p')
SUM_AFTER=$(cd "$PRIV_B/srv/demo" && sha256sum blob hello.txt)
say "checksums in its private area on node B:"
printf '%s\n' "$SUM_AFTER"
[ "$SUM_BEFORE" = "$SUM_AFTER" ] || die "the data differs after the move"
say "${C_OK}identical to node A's before the move${C_OFF}"
[ "$(lxc-info -P "$DEMO/b/state/lxc" -n "cta-$B_ID-$VEID" -s -H)" = RUNNING ] ||
        die "the container does not run on node B"
say "inside the container, on node B:"
# shellcheck disable=SC2016 # expanded inside the container
IN_CT='echo "hostname $(hostname), init $(tr "\0" " " </proc/1/cmdline)"; cat /srv/demo/hello.txt'
run lxc-attach -P "$DEMO/b/state/lxc" -n "cta-$B_ID-$VEID" -- /bin/sh -c "$IN_CT" ||
        say "(lxc-attach did not work here; the checks above already show it runs)"

section "Its network on node B"
say "It kept its address $CT_IP, which is on node A's bridge; node B's bridge is"
say "${BRIDGE_CIDR[b]}, so it gets an address there (applied at the next start):"
run cta -H "$B" set "$CT_NAME" --ip "$CT_IP_B/24"
run cta -H "$B" restart "$CT_NAME"
run ping -c 2 -W 2 "$CT_IP_B"

FINISHED=1
section "Done"
ELAPSED=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
say "${C_OK}container $CT_NAME moved from node A ($A) to node B ($B) and runs there;" \
    "the whole demo took $ELAPSED s.${C_OFF}"
