"""relocator/migrate_v2v between two real agents over TLS on loopback, with real LXC
containers: the seed's request, fidelity of the private area, progress packets, options,
the failure matrix (nothing lost, exactly one owner, a retry that succeeds), crashes of either
agent at the CTA_FAULT points of src/daemon/mig.h, cancel, and concurrency.

Needs root (skipped otherwise). Fixtures: ctfixtures.py on top of conftest.py, and
migfixtures.py (node pairs, fault injection, manifests).
"""

import os
import re
import shutil
import socket
import subprocess
import time

import pytest

import ctahelpers as H
import ctfixtures as F
import migfixtures as M
from ctfixtures import ct_nodes, ct_template_dir  # noqa: F401 (fixtures)
from migfixtures import ct_admin  # noqa: F401 (fixture, see there why not ctfixtures')
from test_containers import create, lifecycle

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: runs real LXC containers"),
]

E_CANCELLED, E_BUSY = 107, 110
E_DST_CONNECT, E_DST_LOGIN, E_CHECK, E_NO_SPACE = 501, 502, 503, 504
MIB = 1 << 20
SLOW = 40  # percent of one CPU for a destination that must take a few seconds to receive


# ---------------------------------------------------------------------------------------------
# Helpers

def logs(p):
    return "\n--- src log ---\n%s\n--- dst log ---\n%s" % (p.src.log_excerpt(60),
                                                          p.dst.log_excerpt(60))


def expect_ok(m, p, what="migration"):
    r = m.reply
    assert r.error is None, "%s failed: %r\n--- request ---\n%s\n--- reply ---\n%s%s" % (
        what, r.error, m.pkt, r.text, logs(p))
    assert r.is_ok, "%s: neither ok nor error:\n%s" % (what, r.text)
    return r


def expect_code(m, p, code, what="migration"):
    r = m.reply
    assert r.code == code, "%s: expected error %s, got %r\n--- request ---\n%s\n--- reply " \
        "---\n%s%s" % (what, code, r.error, m.pkt, r.text, logs(p))
    return r


def new_ct(p, c, veid, *, running=True, data_mb=0, name=None, ip_host=None):
    """A busybox container on the source; data_mb MiB of data in /data.bin."""
    _, env = create(c, name=name or "ct%d" % veid, hostname="h%d.example.test" % veid,
                    veid=veid, ip=p.src.ip(ip_host or (veid % 200 + 2)))
    eid = env["eid"]
    if data_mb:
        M.fill(os.path.join(p.src.private_root, str(veid), "data.bin"), data_mb)
    if running:
        lifecycle(c, "start", eid)
    return eid


def migrated_path(ct, veid):
    return os.path.join(ct.private_root, "%d.migrated" % veid)


def retry_succeeds(p, c, eid, veid, what, options="<type>0</type>"):
    """The retry after a failure: migrates the container (running on the source) and it runs
    on the destination, gone from the source."""
    m = M.migrate(c, M.mig_packet(p.dst, eid, p.admin, options=options))
    expect_ok(m, p, "retry after %s" % what)
    M.assert_owner(p.dst, p.src, eid, veid, running=True, what="after the retry (%s)" % what)
    assert os.path.isdir(migrated_path(p.src, veid)), "%s: no .migrated on the source" % what


def closed_port(host):
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------------------------
# 1. The seed's request and fidelity

def test_seed_request_migrates_running_container(ct_nodes, ct_admin, xsd):
    """The seed's request as written (force, nostart, type 0; only eid, address, port and
    credentials replaced): a running container with a rich
    private area moves; it is stopped on the destination (nostart), identical to the byte, the
    owner, the ns mtime, the xattr, the ACL, the hard link and the hole; gone from the source
    (get_info, registry, LXC config) whose private area is renamed .migrated; same eid."""
    p = M.Pair(ct_nodes, ct_admin)
    with p.src.client() as ca:
        _, env = create(ca, name="web01", hostname="web01.example.test", veid=101,
                        ip=p.src.ip(2), description="customer's web server")
        eid = env["eid"]
        lifecycle(ca, "start", eid)
        priv = os.path.join(p.src.private_root, "101")
        rich = os.path.join(priv, "rich")
        M.build_rich_tree(rich)
        with open(os.path.join(priv, "root", "data.txt"), "w") as f:
            f.write("customer data\n")
        before = M.manifest(rich)
        acl_before = M.getfacl(rich)
        sparse_blocks = os.lstat(os.path.join(rich, "sparse.img")).st_blocks

        m = M.migrate(ca, M.seed_literal(p.dst, eid, ct_admin))
        expect_ok(m, p)
        H.assert_valid(m.reply, "migrate_v2v reply")
        assert "<force/>" in m.pkt and "<nostart/>" in m.pkt and "<type>0</type>" in m.pkt
        # no id in the seed's packet: no progress packets (spec 4.1: progress="on" and an id)
        assert m.progress == [], [r.text for _, r in m.progress]
        # Gone from the source: get_info, registry, LXC config; private area renamed.
        assert M.info(ca, eid) is None
        assert M.db_rows(p.src, eid) == 0
        assert not os.path.exists(os.path.join(p.src.lxcpath, p.src.lxc_name(101)))
        assert not os.path.exists(priv)
        assert os.path.isdir(priv + ".migrated")
        assert p.src.init_pid(101) is None
        # The destination flushed the tree to disk before it accepted the stream, and the
        # source logged where the time went.
        dlog, slog = p.dst.node.log(), p.src.node.log()
        got = re.search(r"received \d+ entries, \d+ data bytes \((\d+) written direct, (\d+) "
                        r"of them from the stream queue; \d+ files patched in place; "
                        r"flushed \d+ times during the stream; final flush to disk \d+ ms\)",
                        dlog)
        assert got, p.dst.log_excerpt()
        # the sparse image's 4 MiB of data arrived aligned and went to disk from the queue
        # (on a file system that does direct I/O)
        if int(got.group(1)):
            assert int(got.group(2)) >= 2 << 20, got.group(0)
        # a running container: copied while it ran, then stopped for what changed
        assert re.search(r"moved to [^ ]+ \(connect [\d.]+ s, scan [\d.]+ s, hello [\d.]+ s, "
                         r"precopy [\d.]+ s, stop [\d.]+ s, stream [\d.]+ s, "
                         r"commit [\d.]+ s, retire [\d.]+ s\)", slog), p.src.log_excerpt()

    # nostart: whole on the destination, stopped.
    M.assert_owner(p.dst, p.src, eid, 101, running=False, what="after the seed request")
    dpriv = os.path.join(p.dst.private_root, "101")
    # The whole private area equals what the source had (it is frozen as .migrated).
    diff = M.manifest_diff(M.manifest(priv + ".migrated"), M.manifest(dpriv))
    assert diff == [], "destination private area differs from the source's:\n" + \
        "\n".join(diff[:40])
    # The rich tree equals the snapshot taken before the migration.
    after = M.manifest(os.path.join(dpriv, "rich"))
    diff = M.manifest_diff(before, after)
    assert diff == [], "rich tree differs after the migration:\n" + "\n".join(diff[:40])
    assert M.getfacl(os.path.join(dpriv, "rich")) == acl_before
    # spot checks, independent of the manifest code
    sp = os.lstat(os.path.join(dpriv, "rich", "sparse.img"))
    assert sp.st_size == 1 << 30 and sp.st_blocks * 512 < 16 * MIB, \
        "the sparse file is no longer sparse: %d blocks (source had %d)" % (sp.st_blocks,
                                                                             sparse_blocks)
    a = os.lstat(os.path.join(dpriv, "rich", "a", "linked"))
    b = os.lstat(os.path.join(dpriv, "rich", "b", "deep", "er", "link2"))
    assert (a.st_ino, a.st_nlink) == (b.st_ino, 3)
    assert os.getxattr(os.path.join(dpriv, "rich", "a", "plain.txt"), "user.note") == \
        b"migrated with care"
    rc, out = F.run(["getcap", os.path.join(dpriv, "rich", "a", "suid")])
    assert "cap_net_bind_service" in out and "cap_net_raw" in out, out
    st = os.lstat(os.path.join(dpriv, "rich", "a", "suid"))
    assert st.st_mode & 0o7777 == 0o4755 and st.st_gid == 4000000000
    with open(os.path.join(dpriv, "root", "data.txt")) as f:
        assert f.read() == "customer data\n"

    with p.dst.client() as cb:
        # same eid, same configuration
        r = cb.call(F.envm_packet("<get_info><eid>%s</eid><config/></get_info>" % eid))
        envs = F.env_dicts(r)
        assert [e["eid"].lower() for e in envs] == [eid.lower()], r.text
        assert envs[0].get("name") == "web01" and envs[0].get("hostname") == \
            "web01.example.test", r.text
        assert (p.src.ip(2), "255.255.255.0") in envs[0]["addresses"], r.text
        # and it works there
        lifecycle(cb, "start", eid)
        assert M.info(cb, eid) == (F.ST_RUNNING, 0)
        assert p.dst.init_pid(101)


def test_etc_hostname_untouched(ct_nodes, ct_admin):
    """Every file of the private area arrives as it was, etc/hostname included."""
    p = M.Pair(ct_nodes, ct_admin)
    with p.src.client() as ca:
        eid = new_ct(p, ca, 101, running=False)
        priv = os.path.join(p.src.private_root, "101")
        hn = os.path.join(priv, "etc", "hostname")
        os.setxattr(hn, "user.owner-note", b"set by the container's admin")
        os.chmod(hn, 0o640)
        os.utime(hn, ns=(10**18, 10**18))
        m = M.migrate(ca, M.mig_packet(p.dst, eid, ct_admin))
        expect_ok(m, p)
    diff = M.manifest_diff(M.manifest(priv + ".migrated"),
                           M.manifest(os.path.join(p.dst.private_root, "101")))
    assert diff == [], "\n".join(diff)
    # a stopped container: one pass, and no summary built for a pass that does not come
    assert "summary for the next pass" not in p.dst.node.log(), p.dst.log_excerpt()


def test_without_options_runs_on_destination_remove_and_stopped(ct_nodes, ct_admin):
    """No <options> at all: a running container runs on the destination. <remove>true</remove>
    deletes the source's private area. A stopped container stays stopped."""
    p = M.Pair(ct_nodes, ct_admin)
    with p.src.client() as ca:
        e1 = new_ct(p, ca, 101)
        e2 = new_ct(p, ca, 102, running=False)
        rich = os.path.join(p.src.private_root, "101", "rich")
        M.build_rich_tree(rich)
        before = M.manifest(rich)

        m = M.migrate(ca, M.mig_packet(p.dst, e1, ct_admin, options=None))
        expect_ok(m, p, "migrate without options")
        m = M.migrate(ca, M.mig_packet(p.dst, e2, ct_admin,
                                       options="<remove>true</remove><type>0</type>"))
        expect_ok(m, p, "migrate with remove")
    M.assert_owner(p.dst, p.src, e1, 101, running=True, what="without options")
    F.pid_alive(p.dst.init_pid(101))
    diff = M.manifest_diff(before, M.manifest(os.path.join(p.dst.private_root, "101", "rich")))
    assert diff == [], "\n".join(diff[:40])
    assert os.path.isdir(migrated_path(p.src, 101))
    M.assert_owner(p.dst, p.src, e2, 102, running=False, what="stopped, with remove")
    assert not os.path.exists(migrated_path(p.src, 102)), "remove kept the private area"
    assert sorted(os.listdir(p.src.private_root)) == ["101.migrated"], \
        os.listdir(p.src.private_root)


# A program inside the container that keeps writing until the container stops: a counter
# (same size each time), an appended log and a rotating set of files.
WRITER = """#!/bin/sh
mkdir -p /busy
i=0
while :; do
        i=$((i + 1))
        printf '%08d' $i > /busy/counter
        echo "line $i" >> /busy/log
        echo "$i" > /busy/f$((i % 20))
        rm -f /busy/f$(((i + 10) % 20))
done
"""


def start_with_writer(ca, eid, priv, script, marker):
    """Put script in the stopped container's rc.local, start it, and wait until the program
    has made marker (a path in the private area)."""
    rc = os.path.join(priv, "etc", "rc.local")
    with open(rc, "w") as f:
        f.write(script)
    os.chmod(rc, 0o755)
    lifecycle(ca, "start", eid)
    deadline = time.time() + 30  # (a container's boot under ASan on a loaded machine)
    while not os.path.exists(os.path.join(priv, marker)):
        assert time.time() < deadline, "the writer inside the container did not start"
        time.sleep(0.05)


def test_running_container_copied_while_it_runs(ct_nodes, ct_admin):
    """A running container is copied while it runs, then stopped only for a second pass of
    what changed meanwhile: a program inside it writes without pause until it is stopped, and
    the destination's private area equals the source's as the stop left it (.migrated),
    the last counter and log line included. The second pass sends less than the first."""
    p = M.Pair(ct_nodes, ct_admin)
    with p.src.client() as ca:
        eid = new_ct(p, ca, 131, running=False, data_mb=16)
        priv = os.path.join(p.src.private_root, "131")
        start_with_writer(ca, eid, priv, WRITER, os.path.join("busy", "log"))
        # what the writer leaves alone is then older than the first pass (less the 1 s
        # the second allows for coarse file times), as in a container that has run a while
        time.sleep(1.2)
        # nostart: the copy at B stays as the stop left it, to compare
        m = M.migrate(ca, M.mig_packet(p.dst, eid, p.admin,
                                       options="<nostart/><type>0</type>"))
        expect_ok(m, p)
    M.assert_owner(p.dst, p.src, eid, 131, running=False, what="after the live copy")
    slog = p.src.node.log()
    # (the summary for the second pass is fetched before the stop: "stop", not "stop+have")
    assert re.search(r"moved to [^ ]+ \(.*precopy [\d.]+ s, stop [\d.]+ s, "
                     r"stream [\d.]+ s", slog), p.src.log_excerpt()
    sent = [int(b) for b in re.findall(r"sent \d+ entries, (\d+) data bytes", slog)]
    assert len(sent) == 2, "expected two passes: %s" % sent
    assert sent[0] >= 16 * MIB and 0 < sent[1] < sent[0] // 4, sent
    # the second pass sends no record at all for what the container left alone since the
    # first began (its busybox tree): far fewer entries than the first
    first = [int(a) for a in re.findall(r"sent (\d+) entries, \d+ data bytes \(\d+ on the "
                                        r"wire\)", slog)]
    second = [(int(a), int(q)) for a, q in re.findall(
        r"sent (\d+) entries, \d+ data bytes \(\d+ on the wire; (\d+) entries as the first "
        r"pass left them\)", slog)]
    assert len(first) == 1 and len(second) == 1 and second[0][1] > 0, (first, second)
    assert second[0][0] < first[0] // 2, (first, second)
    # the summary for the second pass was built before the stop, not during the downtime
    assert re.search(r"have summary of \d+ entries sent \(built at the end of the last "
                     r"stream; waited 0.00 s for it\)", p.dst.node.log()), p.dst.log_excerpt()
    frozen = migrated_path(p.src, 131)
    moved = os.path.join(p.dst.private_root, "131")
    diff = M.manifest_diff(M.manifest(frozen), M.manifest(moved))
    assert diff == [], "the copy differs from the source at its stop:\n" + "\n".join(diff[:40])
    # (the stop may catch the counter between truncate and write: the manifest covers it)
    with open(os.path.join(moved, "busy", "log")) as f:
        lines = f.read().splitlines()
    assert lines and lines == ["line %d" % i for i in range(1, len(lines) + 1)], \
        "torn log at the stop (%d lines)" % len(lines)


# A database-like program: it keeps rewriting a few places of one large file.
DB_WRITER = """#!/bin/sh
i=0
while :; do
        i=$((i + 1))
        printf '%08d' $i | dd of=/data.bin bs=8 seek=$(( (i % 4) * 131072 + 77 )) \\
                conv=notrunc 2>/dev/null
        echo $i > /db-started
done
"""


def test_large_file_written_while_copied_is_patched_in_place(ct_nodes, ct_admin):
    """A running container whose program keeps rewriting a few blocks of a 64 MiB file: the
    second pass (container stopped) sends only those blocks and the destination writes them
    into the copy the first pass made, not into a new 64 MiB file; the result equals the
    source as the stop left it."""
    p = M.Pair(ct_nodes, ct_admin)
    with p.src.client() as ca:
        eid = new_ct(p, ca, 132, running=False, data_mb=64)
        priv = os.path.join(p.src.private_root, "132")
        start_with_writer(ca, eid, priv, DB_WRITER, "db-started")
        m = M.migrate(ca, M.mig_packet(p.dst, eid, p.admin,
                                       options="<nostart/><type>0</type>"))
        expect_ok(m, p)
    M.assert_owner(p.dst, p.src, eid, 132, running=False, what="after the live copy")
    sent = [int(b) for b in re.findall(r"sent \d+ entries, (\d+) data bytes",
                                       p.src.node.log())]
    assert len(sent) == 2, "expected two passes: %s" % sent
    # (files created less than a second before the first pass are sent again: their
    # ctime is too close to tell)
    assert sent[0] >= 64 * MIB and sent[1] <= 8 * MIB, sent
    patched = [int(n) for n in re.findall(r"(\d+) files patched in place", p.dst.node.log())]
    assert patched == [0, 1], (patched, p.dst.log_excerpt())
    frozen = migrated_path(p.src, 132)
    moved = os.path.join(p.dst.private_root, "132")
    diff = M.manifest_diff(M.manifest(frozen), M.manifest(moved))
    assert diff == [], "the copy differs from the source at its stop:\n" + "\n".join(diff[:40])
    with open(os.path.join(frozen, "data.bin"), "rb") as a, \
            open(os.path.join(moved, "data.bin"), "rb") as b:
        assert a.read() == b.read()


# A database that writes through a shared mapping: it keeps one page of its file dirty and
# writes a counter into it every 2 ms. After its first write (a fault, which moves the file's
# times) the kernel lets it write again without a fault until the page is written back.
MAP_WRITER_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(void)
{
        int fd = open("/mapped.db", O_RDWR);
        char *p = fd < 0 ? MAP_FAILED : mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        char num[32];
        if (p == MAP_FAILED)
                return 1;
        for (unsigned long i = 1;; i++) {
                /* (formatted aside and copied in one 16-byte store: snprintf straight into
                 * the page clears its first byte first, and a stop then left "\0000...866") */
                snprintf(num, sizeof(num), "%016lu", i);
                memcpy(p, num, 16);
                if (i == 1)
                        close(open("/mapped-started", O_CREAT | O_WRONLY, 0644));
                usleep(2000);
        }
}
"""


def test_write_through_a_mapping_during_the_copy_reaches_the_destination(ct_nodes, ct_admin,
                                                                         tmp_path):
    """A program in the running container writes a counter through a shared mapping of a
    small file, into a page it dirtied before the migration began: those writes move no file
    time. The first pass copies the file while it runs; the second (container stopped) must
    still send it: the copy holds the counter the stop left, not the first pass's. (Both
    agents share one file system here, and the destination's flush at the end of the first
    stream writes the source's page back too, so the next write faults: this test passes
    without the source's own write-back; incremental__mapped_write_after_first_pass in
    test_migrate shows the loss.)"""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler for the program in the container")
    p = M.Pair(ct_nodes, ct_admin)
    with p.src.client() as ca:
        eid = new_ct(p, ca, 133, running=False)
        priv = os.path.join(p.src.private_root, "133")
        csrc = tmp_path / "mapwriter.c"
        csrc.write_text(MAP_WRITER_C)
        subprocess.run([cc, "-static", "-O1", "-o", os.path.join(priv, "mapwriter"), str(csrc)],
                       check=True)
        with open(os.path.join(priv, "mapped.db"), "wb") as f:
            f.write(b"0" * 16384)
        start_with_writer(ca, eid, priv, "#!/bin/sh\nexec /mapwriter\n", "mapped-started")
        # its first write (the fault) a while before the first pass, as in a database that
        # has run for a while: only the writes after it go on without moving the times
        time.sleep(1.5)
        m = M.migrate(ca, M.mig_packet(p.dst, eid, p.admin,
                                       options="<nostart/><type>0</type>"))
        expect_ok(m, p)
    M.assert_owner(p.dst, p.src, eid, 133, running=False, what="after the live copy")
    frozen = migrated_path(p.src, 133)
    moved = os.path.join(p.dst.private_root, "133")
    with open(os.path.join(frozen, "mapped.db"), "rb") as a, \
            open(os.path.join(moved, "mapped.db"), "rb") as b:
        was, got = a.read(16), b.read(16)
    assert int(was) > 500 and got == was, (was, got, logs(p))
    diff = M.manifest_diff(M.manifest(frozen), M.manifest(moved))
    assert diff == [], "the copy differs from the source at its stop:\n" + "\n".join(diff[:40])


# ---------------------------------------------------------------------------------------------
# 2. Progress packets

def test_progress_packets(ct_nodes, ct_admin, xsd):
    """~300 MB: progress 1, then 2s with non-decreasing percent, then 3, each type 1 /
    priority 4000 / the request id / op relocator.migrate_v2v / the eid, XSD-valid, at least
    one a second while data flows; the final reply after them."""
    p = M.Pair(ct_nodes, ct_admin)
    with p.src.client() as ca:
        eid = new_ct(p, ca, 101, data_mb=300)
        # half the usual: with large files going around the page cache, 300 MB took under a
        # second at 40%
        with M.SlowCpu(p.dst, SLOW // 2):
            m = M.migrate(ca, M.mig_packet(p.dst, eid, ct_admin, options="<type>0</type>"))
        expect_ok(m, p)
        t_reply = time.monotonic()
        # nothing of this migration after the final reply
        r = ca.ping()
        assert r.is_ok and not r.is_progress, r.text
    assert len(m.progress) >= 4, [M.progress_params(r) for _, r in m.progress]
    params = []
    for t, r in m.progress:
        pp = M.progress_params(r)
        params.append(pp)
        what = "progress packet %s" % pp
        assert r.root.get("type") == "1", what + r.text
        assert r.root.get("priority") == "4000", what + r.text
        assert r.id == m.id, what + r.text
        assert r.origin == "relocator", r.text
        assert pp.get("op") == "relocator.migrate_v2v", r.text
        assert [e.lower() for e in pp["eids"]] == [eid.lower()], r.text
        assert pp.get("eid", "").lower() == eid.lower(), r.text
        assert "%eid%" in pp.get("template", ""), r.text
        H.assert_valid(r, what)
        assert t <= t_reply
    statuses = [int(x["status"]) for x in params]
    assert statuses[0] == 1 and statuses[-1] == 3, statuses
    assert set(statuses[1:-1]) == {2}, statuses
    percents = [int(x["percent"]) for x in params if x.get("percent") not in (None, "")]
    mid = [int(x["percent"]) for x in params if x["status"] == "2"]
    assert mid == sorted(mid), "percent goes backwards: %s" % mid
    # nor do the bytes (a bar drawn from them): not between the passes, not in the second
    done = [int(x["bytes_done"]) for x in params if x["status"] == "2"]
    assert done == sorted(done), "bytes_done goes backwards: %s" % done
    assert 0 <= min(percents) and max(percents) == 100, percents
    assert int(params[-1]["percent"]) == 100
    # percent from bytes done / bytes total: the container runs, so it is copied while it
    # runs (0-90 %), then stopped for the pass of what changed (90-100 %)
    copying = [(t, x) for (t, _), x in zip(m.progress, params) if x["status"] == "2" and
               x.get("phase", "").startswith("copying data while the container runs,")]
    assert len(copying) >= 3, params
    total = int(copying[-1][1]["bytes_total"])
    assert total >= 300 * MIB, params
    for _, x in copying:
        assert abs(int(x["percent"]) - int(x["bytes_done"]) * 90 // total) <= 1, x
    last = [x for x in params if x["status"] == "2" and
            x.get("phase", "").startswith("copying what changed meanwhile,")]
    assert last and all(int(x["percent"]) >= 90 for x in last), params
    assert any(0 < int(x["percent"]) < 90 for _, x in copying), params
    # at least one a second while data flows: from the first copy packet to the last
    times = [t for t, _ in copying]
    gaps = [b - a for a, b in zip(times, times[1:])]
    print("copy: %d progress packets over %.2f s, largest gap %.2f s" % (
        len(times), times[-1] - times[0], max(gaps)), ["%.2f" % g for g in gaps])
    assert max(gaps) <= 1.0, "progress gaps while copying: %s" % ["%.2f" % g for g in gaps]
    assert times[-1] - times[0] >= 1.0, "the copy was too short to show the rate"
    # the data arrived
    assert M.content_hash(os.path.join(p.dst.private_root, "101", "data.bin")) == \
        M.content_hash(os.path.join(migrated_path(p.src, 101), "data.bin"))


# ---------------------------------------------------------------------------------------------
# 3. Failure matrix

def test_wrong_password_and_unknown_port_then_retry(ct_nodes, ct_admin):
    p = M.Pair(ct_nodes, ct_admin)
    with p.src.client() as ca:
        eid = new_ct(p, ca, 101)
        m = M.migrate(ca, M.mig_packet(p.dst, eid, ct_admin, password="wrong-password",
                                       options="<type>0</type>"))
        expect_code(m, p, E_DST_LOGIN, "wrong destination password")
        M.assert_owner(p.src, p.dst, eid, 101, running=True, what="after a wrong password")
        m = M.migrate(ca, M.mig_packet(p.dst, eid, ct_admin, port=closed_port("127.0.0.12"),
                                       options="<type>0</type>"))
        expect_code(m, p, E_DST_CONNECT, "unknown destination port")
        M.assert_owner(p.src, p.dst, eid, 101, running=True, what="after an unknown port")
        retry_succeeds(p, ca, eid, 101, "a wrong password and an unknown port")


class SmallFs:
    """A tmpfs of `size` on the destination's private root, mounted before its daemon
    starts (Pair's before_dst) and lazily unmounted at the end."""

    def __init__(self, size="50m"):
        self.size, self.path = size, None

    def __call__(self, dst):
        d = dst.private_root
        os.makedirs(d, exist_ok=True)
        F.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % self.size, "cta-mig-full",
               d], check=True)
        self.path = d

    def grow(self, size):
        F.run(["mount", "-o", "remount,size=%s" % size, self.path], check=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        if self.path:
            F.run(["umount", "-l", self.path])


def test_destination_full_then_retry(ct_nodes, ct_admin):
    """The destination's private root is a 50 MiB tmpfs; an 80 MiB container is refused with
    504 before any data moves. Forced past that check, the copy fills the disk: an error,
    rolled back, nothing left. After the file system grows the retry succeeds."""
    with SmallFs("50m") as fs:
        p = M.Pair(ct_nodes, ct_admin, before_dst=fs)
        with p.src.client() as ca:
            eid = new_ct(p, ca, 101, data_mb=80)
            m = M.migrate(ca, M.mig_packet(p.dst, eid, ct_admin, options="<type>0</type>"))
            r = m.reply
            assert r.code == E_NO_SPACE, "expected 504, got %r\n%s%s" % (r.error, r.text,
                                                                        logs(p))
            assert "space" in r.error[1], r.error
            M.assert_owner(p.src, p.dst, eid, 101, running=True, what="destination full")
            # before any data moved: nothing ever written there, the copy never started
            assert os.listdir(fs.path) == [], os.listdir(fs.path)
            assert "received" not in p.dst.node.log()
            assert not [x for _, x in m.progress
                        if M.progress_params(x).get("phase", "").startswith("copying")]
            # forced past the check: the disk fills mid-copy
            m = M.migrate(ca, M.mig_packet(p.dst, eid, ct_admin,
                                           options="<force/><type>0</type>"))
            assert m.reply.error is not None, "80 MiB fitted in 50 MiB?\n" + m.reply.text
            M.assert_owner(p.src, p.dst, eid, 101, running=True, what="forced into a full fs")
            assert os.listdir(fs.path) == [], os.listdir(fs.path)
            fs.grow("400m")
            retry_succeeds(p, ca, eid, 101, "a full destination")


def test_refusal_reason_reaches_the_source(ct_nodes, ct_admin):
    with SmallFs("50m") as fs:
        p = M.Pair(ct_nodes, ct_admin, before_dst=fs)
        with p.src.client() as ca:
            eid = new_ct(p, ca, 101, data_mb=80, running=False)
            m = M.migrate(ca, M.mig_packet(p.dst, eid, ct_admin,
                                           options="<force/><type>0</type>"))
    assert m.reply.code == E_NO_SPACE or "space" in (m.reply.error or (0, ""))[1], \
        m.reply.error


def test_veid_name_ip_clash_then_force_and_retry(ct_nodes, ct_admin):
    """A destination container with the same veid, name and IP: 503 listing every problem at
    once; force does not override veid/name. An IP clash alone: 503; with <force/> it moves
    but is not started on the destination."""
    p = M.Pair(ct_nodes, ct_admin)
    with p.src.client() as ca, p.dst.client() as cb:
        e1 = new_ct(p, ca, 101, name="clash", ip_host=7)
        ip = p.src.ip(7)
        _, env = create(cb, name="clash", veid=101, ip=ip)
        other = env["eid"]
        m = M.migrate(ca, M.mig_packet(p.dst, e1, ct_admin, options="<type>0</type>"))
        r = expect_code(m, p, E_CHECK, "veid+name+ip clash")
        msg = r.error[1]
        assert "veid 101" in msg and "clash" in msg and ip in msg, \
            "not every problem reported at once: %r" % msg
        M.assert_owner(p.src, p.dst, e1, 101, running=True, what="veid clash",
                       other_uses_veid=True)
        assert M.info(cb, other) == (F.ST_DOWN, 0)
        m = M.migrate(ca, M.mig_packet(p.dst, e1, ct_admin))  # seed: force + nostart
        r = expect_code(m, p, E_CHECK, "veid clash with force")
        assert "veid 101" in r.error[1], r.error
        M.assert_owner(p.src, p.dst, e1, 101, running=True, what="veid clash, force",
                       other_uses_veid=True)

        # IP clash only: another veid and name on the destination
        lifecycle(cb, "destroy", other)
        _, env = create(cb, name="ipuser", veid=150, ip=ip)
        other = env["eid"]
        m = M.migrate(ca, M.mig_packet(p.dst, e1, ct_admin, options="<type>0</type>"))
        r = expect_code(m, p, E_CHECK, "ip clash")
        assert ip in r.error[1] and "veid 101" not in r.error[1], r.error
        M.assert_owner(p.src, p.dst, e1, 101, running=True, what="ip clash")
        # force overrides it; the container is not started on the destination
        m = M.migrate(ca, M.mig_packet(p.dst, e1, ct_admin, options="<force/><type>0</type>"))
        expect_ok(m, p, "ip clash with force")
        M.assert_owner(p.dst, p.src, e1, 101, running=False, what="ip clash, forced")
        assert "forced past" in p.dst.node.log()
        assert M.info(cb, other) == (F.ST_DOWN, 0)

    # a retry after the refusals, of a second container to the same destination
    with p.src.client() as ca:
        e2 = new_ct(p, ca, 102)
        retry_succeeds(p, ca, e2, 102, "clashes")


@pytest.mark.parametrize("opts", ["<type>0</type>", "<type>0</type><compress>1</compress>"],
                         ids=["plain", "zstd"])
def test_connection_cut_mid_stream(ct_nodes, ct_admin, xsd, opts):
    """kill -9 of the destination while it receives: the source reports an error and runs the
    container again; the restarted destination has no staging left; the retry succeeds. While
    the migration hangs, the container is locked: a second migrate or a stop gets 110. The
    same with the stream compressed (the decoder between the queue and the receiver)."""
    p = M.Pair(ct_nodes, ct_admin, dst_fault="dst_mid_receive")
    with p.src.client() as ca, p.src.client() as ca2:
        eid = new_ct(p, ca, 101, data_mb=40)
        mig = M.Migration(ca, M.mig_packet(p.dst, eid, ct_admin, options=opts))
        M.wait_fault(p.dst, "dst_mid_receive")
        # locked on the source while it migrates
        m2 = M.migrate(ca2, M.mig_packet(p.dst, eid, ct_admin, options="<type>0</type>"))
        expect_code(m2, p, E_BUSY, "second migrate of the same container")
        r = ca2.call(F.envm_packet("<stop><eid>%s</eid></stop>" % eid))
        assert r.code == E_BUSY, "stop during the migration: %r\n%s" % (r.error, r.text)
        staging = M.staging_left(p.dst)
        assert staging, "no staging area on the destination mid-stream"
        p.dst.kill9()
        r = mig.finish(60)
        assert r.error is not None, "the migration succeeded without a destination:\n" + r.text
        assert r.code in (508, 507), r.error
        statuses = [M.progress_params(x)["status"] for _, x in mig.progress]
        assert statuses[-1] == "4", statuses
        H.assert_valid(mig.progress[-1][1], "the failure progress packet (status 4)")
        M.disarm(p.dst)
        M.restart(p.dst)
        M.assert_owner(p.src, p.dst, eid, 101, running=True, what="after the cut")
        assert ("dst", "failed") in M.journal_states(p.dst), M.journal_states(p.dst)
        retry_succeeds(p, ca, eid, 101, "a cut connection", options=opts)
    if "compress" in opts:
        assert re.search(r"zstd level 1: \d+ stream bytes", p.src.node.log()), \
            p.src.log_excerpt()


def test_kill_destination_while_it_patches_in_place(ct_nodes, ct_admin):
    """kill -9 of the destination in a live migration's second pass, while it writes the
    changed blocks of a large file into its first copy: the source starts the container
    again (whole: it never left), the restarted destination has no staging area left, and
    the retry's copy equals the source as its stop left it."""
    p = M.Pair(ct_nodes, ct_admin, dst_fault="dst_mid_patch")
    with p.src.client() as ca:
        eid = new_ct(p, ca, 133, running=False, data_mb=64)
        priv = os.path.join(p.src.private_root, "133")
        start_with_writer(ca, eid, priv, DB_WRITER, "db-started")
        mig = M.Migration(ca, M.mig_packet(p.dst, eid, ct_admin, options="<type>0</type>"))
        M.wait_fault(p.dst, "dst_mid_patch")
        assert M.staging_left(p.dst), "no staging area on the destination mid-stream"
        # (the first stream is in: its receive line and the summary built after it)
        dlog = p.dst.node.log()
        assert len(re.findall(r"received \d+ entries", dlog)) == 1, p.dst.log_excerpt()
        assert "summary for the next pass built" in dlog, p.dst.log_excerpt()
        p.dst.kill9()
        r = mig.finish(60)
        assert r.error is not None, "the migration succeeded without a destination:\n" + r.text
        M.disarm(p.dst)
        M.restart(p.dst)
        M.assert_owner(p.src, p.dst, eid, 133, running=True, what="after the cut")
        assert not M.staging_left(p.dst), M.staging_left(p.dst)
        m = M.migrate(ca, M.mig_packet(p.dst, eid, p.admin,
                                       options="<nostart/><type>0</type>"))
        expect_ok(m, p, "retry after the cut in the second pass")
    frozen = migrated_path(p.src, 133)
    moved = os.path.join(p.dst.private_root, "133")
    diff = M.manifest_diff(M.manifest(frozen), M.manifest(moved))
    assert diff == [], "the copy differs from the source at its stop:\n" + "\n".join(diff[:40])


@pytest.mark.parametrize("point", ["src_in_probe", "src_after_hello", "src_mid_copy",
                                   "src_before_commit", "src_after_commit"])
def test_kill_source(ct_nodes, ct_admin, point):
    """kill -9 of the source agent at a point, then restart on the same state dir: before the
    commit the container is back and running on the source and the destination is clean;
    after it the destination owns it and the source retires its copy. src_in_probe: during
    the link probe of automatic compression (72 MiB: worth a probe), after hello, with the
    destination dropping frames."""
    mid = point == "src_mid_copy"
    in_probe = point == "src_in_probe"
    p = M.Pair(ct_nodes, ct_admin, src_fault=point, builtin_compress=in_probe)
    with p.src.client() as ca:
        # mid-copy: enough data and a slow receiver that the copy is half done at the fault
        eid = new_ct(p, ca, 101, data_mb=200 if mid else 72 if in_probe else 8)
        # (a receiver without copies takes 200 MiB in well under a second at SLOW)
        with M.SlowCpu(p.dst, SLOW // 4 if mid else SLOW):
            M.Migration(ca, M.mig_packet(p.dst, eid, ct_admin, options="<type>0</type>"))
            M.wait_fault(p.src, point)
            if mid:
                got = M.tree_bytes(M.staging_left(p.dst))
                assert 0 < got < 190 * MIB, "not mid-copy: %d bytes on the destination" % got
            p.src.kill9()
    committed = point == "src_after_commit"
    if not committed:
        # the destination saw the source go away and dropped what it had
        ok = H.wait_for(lambda: not M.staging_left(p.dst) and M.db_rows(p.dst, eid) == 0 and
                        ("dst", "failed") in M.journal_states(p.dst), 20, 0.1)
        assert ok, "destination not clean 20 s after the source died: staging %r, journal " \
            "%r, destination alive: %s%s" % (M.staging_left(p.dst), M.journal_states(p.dst),
                                              p.dst.node.alive(), logs(p))
    M.disarm(p.src)
    M.restart(p.src)
    if committed:
        M.assert_owner(p.dst, p.src, eid, 101, running=True, what="kill at %s" % point)
        assert os.path.isdir(migrated_path(p.src, 101)), os.listdir(p.src.private_root)
        assert "retired" in p.src.node.log()
        # nothing blocks the next migration: it goes back
        with p.dst.client() as cb:
            m = M.migrate(cb, M.mig_packet(p.src, eid, ct_admin, options="<type>0</type>"))
            assert m.reply.error is None, "migrating back failed: %r%s" % (m.reply.error,
                                                                            logs(p))
        M.assert_owner(p.src, p.dst, eid, 101, running=True, what="migrated back")
    else:
        M.assert_owner(p.src, p.dst, eid, 101, running=True, what="kill at %s" % point)
        with p.src.client() as ca:
            retry_succeeds(p, ca, eid, 101, "kill -9 of the source at %s" % point)


def migrate_and_kill_dst_at(p, ca, point):
    """A running container (4 MiB of data) migrating from p.src to p.dst, whose daemon is
    killed -9 at its fault point `point` (armed by the Pair). Returns (eid, Migration)."""
    eid = new_ct(p, ca, 101, data_mb=4)
    mig = M.Migration(ca, M.mig_packet(p.dst, eid, p.admin, options="<type>0</type>"))
    M.wait_fault(p.dst, point)
    p.dst.kill9()
    return eid, mig


@pytest.mark.parametrize("point", ["dst_before_rename", "dst_after_rename", "dst_after_commit"])
def test_kill_destination_at_commit(ct_nodes, ct_admin, point):
    """kill -9 of the destination during the commit; it is restarted at once (same state dir
    and port). Before the rename: not committed, the source rolls back (runs the container),
    the destination has nothing. After the rename (in place, not registered: recovery
    finishes the commit, and starts the container as the source asked, which a chaos round
    found it did not) and after the commit: the destination owns it, and the source,
    which lost the commit reply, learns it through status and retires its copy."""
    p = M.Pair(ct_nodes, ct_admin, dst_fault=point)
    with p.src.client() as ca:
        eid, mig = migrate_and_kill_dst_at(p, ca, point)
        M.disarm(p.dst)
        M.restart(p.dst)
        r = mig.finish(90)
        if point == "dst_before_rename":
            assert r.error is not None, r.text
            M.assert_owner(p.src, p.dst, eid, 101, running=True, what="kill at %s" % point)
            assert ("dst", "failed") in M.journal_states(p.dst), M.journal_states(p.dst)
            retry_succeeds(p, ca, eid, 101, "kill -9 of the destination at %s" % point)
        else:
            # committed: the destination owns it; it died before the start, so its
            # recovery starts it, and the source (which lost the reply) learns that from
            # status and reports success. (A destination slower to come back than the
            # source's five asks, as under ASan on a loaded machine, leaves the answer to the
            # source's background asks: it must settle the same way.)
            if r.error is not None and "outcome unknown" in str(r.error):
                assert H.wait_for(lambda: "settled; container" in p.src.node.log(), 90, 0.5), \
                    logs(p)
            else:
                assert r.error is None, "%r%s" % (r.error, logs(p))
            M.assert_owner(p.dst, p.src, eid, 101, running=True, what="kill at %s" % point)
            assert os.path.isdir(migrated_path(p.src, 101)), os.listdir(p.src.private_root)


def runs_whole_on(p, owner, other, eid, before, what, timeout=90):
    """Container 101 comes to run on owner by itself within timeout (no call, no restart),
    whole there and nowhere on other, its data.bin hashing to before."""
    ok = H.wait_for(lambda: M.node_view(owner, eid, 101)["info"] == (F.ST_RUNNING, 0),
                    timeout, 0.5)
    assert ok, "%s: the container does not run on %s%s" % (what, owner.node.name, logs(p))
    M.assert_owner(owner, other, eid, 101, running=True, what=what)
    assert M.content_hash(os.path.join(owner.private_root, "101", "data.bin")) == before


def migration_paused_at(p, node, point, pause_ms, *, running=True, options="<type>0</type>"):
    """Container 101 (4 MiB in data.bin; stopped first unless running) migrating from p.src
    to p.dst while `node`, restarted with the fault armed, pauses pause_ms at its fault
    `point`, reached when this returns. Returns (the source's client, for the caller to
    close; the eid; the hash of data.bin; the Migration)."""
    M.arm_fault(node, point, pause_ms=pause_ms)
    node.kill9()
    M.restart(node)
    ca = p.src.client()
    eid = new_ct(p, ca, 101, data_mb=4)
    if not running:
        lifecycle(ca, "stop", eid)
    before = M.content_hash(os.path.join(p.src.private_root, "101", "data.bin"))
    mig = M.Migration(ca, M.mig_packet(p.dst, eid, p.admin, options=options))
    M.wait_fault(node, point)
    return ca, eid, before, mig


@pytest.mark.parametrize("side", ["source", "destination"])
def test_commit_never_goes_unjournaled(ct_nodes, ct_admin, side):
    """The registry of one node cannot be written when the commit comes (another writer
    holds its lock past the busy timeout: as a full or failing disk would). That node must
    not commit without "committing" in its journal: the migration fails and rolls back.
    Then it is killed while the lock is still held and restarted: its crash recovery, which
    sees only the journal, must find the container where it really is. Before the fix the
    source committed anyway, and its recovery then restored a container the destination
    ran (two owners); the destination moved the private area into place unjournaled, and
    its recovery left it there, unregistered."""
    p = M.Pair(ct_nodes, ct_admin)
    node = p.src if side == "source" else p.dst
    ca, eid, before, mig = migration_paused_at(p, p.src, "src_before_commit", 1500)
    try:
        # the source writes "committing" 1.5 s from here, the destination a little later;
        # both wait 5 s for the lock and fail; the kill comes in the rollback after that,
        # while the lock is still held
        lock = M.RegistryLock(node, 60).start()
        failed = H.wait_for(lambda: "cannot journal the migration's step 'committing'"
                            in node.node.log(), 40, 0.1)
        time.sleep(0.5)  # (into the rollback)
        node.kill9()
        lock.release()
        lock.join()
        assert failed, "no failed journal write before the kill\n" + node.log_excerpt()
        if side == "destination":
            r = mig.finish(90)
            assert r.error is not None, "committed without a journal?\n" + r.text + logs(p)
    finally:
        ca.close()
    M.disarm(node)
    M.restart(node)
    runs_whole_on(p, p.src, p.dst, eid, before, "journal unwritable (%s)" % side, timeout=60)
    assert "cannot journal the migration's step 'committing'" in node.node.log(), \
        node.log_excerpt()
    with p.src.client() as ca:
        retry_succeeds(p, ca, eid, 101, "a journal that could not be written")


def test_container_started_by_hand_migrates_as_running(ct_nodes, ct_admin):
    """The registry says down, but the container was started by hand (lxc-start) behind the
    agent's back. A migration must see what runs: stop it for the copy, so that nothing it
    writes is left behind, and start it on the destination. Before the fix it was copied as
    if it were down while it kept running, and not started on the destination."""
    p = M.Pair(ct_nodes, ct_admin)
    with p.src.client() as ca:
        eid = new_ct(p, ca, 101, data_mb=4)
        lifecycle(ca, "stop", eid)
        F.run(["lxc-start", "-P", p.src.lxcpath, "-n", p.src.lxc_name(101)], check=True,
              timeout=60)
        assert p.src.lxc_state(101) == "RUNNING"
        before = M.content_hash(os.path.join(p.src.private_root, "101", "data.bin"))
        m = M.migrate(ca, M.mig_packet(p.dst, eid, ct_admin, options="<type>0</type>"))
        expect_ok(m, p, "migration of a container started by hand")
    M.assert_owner(p.dst, p.src, eid, 101, running=True, what="started by hand")
    assert M.content_hash(os.path.join(p.dst.private_root, "101", "data.bin")) == before
    assert os.path.isdir(migrated_path(p.src, 101))
    assert "(changed outside the agent); fixed" in p.src.node.log(), p.src.log_excerpt()


def test_container_started_by_hand_during_the_migration_stays(ct_nodes, ct_admin):
    """While a migration holds a stopped container, its last copy made, someone starts it by
    hand (lxc-start): what it writes from then on is not in the copy, so the migration must
    not commit. It fails, and the container stays whole on the source, running; the
    destination has nothing. Before the fix it committed anyway: the destination started
    its copy while the source's went on running (two running copies)."""
    p = M.Pair(ct_nodes, ct_admin)
    ca, eid, before, mig = migration_paused_at(p, p.src, "src_before_commit", 3000,
                                               running=False)
    try:
        F.run(["lxc-start", "-P", p.src.lxcpath, "-n", p.src.lxc_name(101)], check=True,
              timeout=60)
        r = mig.finish(90)
        assert r.error is not None and "started outside the agent" in (r.error[1] or ""), \
            r.text + logs(p)
    finally:
        ca.close()
    M.disarm(p.src)
    M.assert_owner(p.src, p.dst, eid, 101, running=True,
                   what="started by hand during the migration")
    assert M.content_hash(os.path.join(p.src.private_root, "101", "data.bin")) == before


def test_copy_started_by_hand_after_the_commit_is_kept(ct_nodes, ct_admin):
    """Between the commit and the retire of the source's copy, someone starts that copy by
    hand (lxc-start). It has written what the destination's copy lacks, so the retire must
    stop it and keep its private area even though the request said remove. Before the fix
    the retire deleted it."""
    p = M.Pair(ct_nodes, ct_admin)
    ca, eid, _, mig = migration_paused_at(p, p.src, "src_after_commit", 3000, running=False,
                                          options="<remove>true</remove><type>0</type>")
    try:
        F.run(["lxc-start", "-P", p.src.lxcpath, "-n", p.src.lxc_name(101)], check=True,
              timeout=60)
        mig.finish(90)
        expect_ok(mig, p, "migration whose old copy was started by hand")
    finally:
        ca.close()
    M.disarm(p.src)
    M.assert_owner(p.dst, p.src, eid, 101, running=False, what="old copy started by hand")
    kept = migrated_path(p.src, 101)
    assert os.path.isfile(os.path.join(kept, "data.bin")), \
        "the copy that ran by hand was deleted%s" % logs(p)
    assert p.src.lxc_state(101) in (None, "STOPPED")


def test_rollback_waits_for_the_registry(ct_nodes, ct_admin):
    """The source's registry stays locked (by another writer, as a full or failing disk
    would) past the commit and through the whole rollback: "committing" cannot be
    journaled, so the migration fails, and the rollback's own registry writes fail too.
    Once the registry can be written again the source must finish the rollback by itself,
    with no restart: the container runs there, no longer marked migrating, and can be
    migrated. Before the fix it stayed stopped and marked migrating until the agent was
    restarted (the failed writes were only logged)."""
    p = M.Pair(ct_nodes, ct_admin)
    ca, eid, before, mig = migration_paused_at(p, p.src, "src_before_commit", 1500)
    try:
        # "committing" waits 5 s for the lock from 1.5 s on and fails; every write of
        # the rollback after it waits 5 s and fails as well until the lock goes at 24 s
        lock = M.RegistryLock(p.src, 24.0).start()
        r = mig.finish(90)
        assert r.error is not None, "committed without a journal?\n" + r.text + logs(p)
        assert p.src.lxc_state(101) != "RUNNING", "restarted with its registry locked?"
        lock.join()
    finally:
        ca.close()
    M.disarm(p.src)
    runs_whole_on(p, p.src, p.dst, eid, before, "the rollback, once the registry could be "
                  "written")
    assert "cannot finish the rollback" in p.src.node.log(), p.src.log_excerpt()
    with p.src.client() as ca:
        retry_succeeds(p, ca, eid, 101, "a rollback that waited for the registry")


def test_start_after_commit_waits_for_the_registry(ct_nodes, ct_admin):
    """The destination commits a running container, and its registry is locked (another
    writer past the busy timeout) when it starts it: the reply says it did not start, and
    once the registry can be written the destination must start it by itself, with no
    restart and no call. Before the fix it stayed down there (the journal said done)."""
    p = M.Pair(ct_nodes, ct_admin)
    ca, eid, before, mig = migration_paused_at(p, p.dst, "dst_after_commit", 1000)
    try:
        lock = M.RegistryLock(p.dst, 12.0).start()
        r = mig.finish(90)
        assert r.error is not None and "did not start" in (r.error[1] or ""), \
            r.text + logs(p)
        assert p.dst.lxc_state(101) != "RUNNING", "started with its registry locked?"
        lock.join()
    finally:
        ca.close()
    M.disarm(p.dst)
    runs_whole_on(p, p.dst, p.src, eid, before, "the start, once the registry could be "
                  "written")
    assert "once the registry could be written" in p.dst.node.log(), p.dst.log_excerpt()


def test_kept_copy_is_not_taken_unjournaled(ct_nodes, ct_admin):
    """A container comes back to a node that kept its old private area (101.migrated): the
    destination takes that copy as its staging area. When its registry cannot record that
    (the lock held by another writer past the busy timeout) it must not take it: the
    migration fails, and after a kill -9 and restart the kept copy is still there, whole.
    Before the fix the copy was moved first and the failed write only logged: the restarted
    node had no record of it, left it as a stray staging area, and the next migration of
    the container there deleted it."""
    p = M.Pair(ct_nodes, ct_admin)
    with p.src.client() as ca:
        eid = new_ct(p, ca, 101, data_mb=4)
        m = M.migrate(ca, M.mig_packet(p.dst, eid, ct_admin, options="<type>0</type>"))
        expect_ok(m, p, "the first migration")
    kept = migrated_path(p.src, 101)
    before = M.content_hash(os.path.join(kept, "data.bin"))
    lock = M.RegistryLock(p.src, 60).start()
    cb = p.dst.client()
    try:
        mig = M.Migration(cb, M.mig_packet(p.src, eid, ct_admin, options="<type>0</type>"))
        # (the kill comes once the write that would record the taking has failed, while
        # the lock is still held)
        failed = H.wait_for(lambda: "journal 'checked'" in p.src.node.log(), 40, 0.1)
        p.src.kill9()
        lock.release()
        lock.join()
        assert failed, "no failed journal write before the kill\n" + p.src.log_excerpt()
        r = mig.finish(90)
        assert r.error is not None, "moved while the destination could not journal?\n" + \
            r.text + logs(p)
    finally:
        cb.close()
    M.restart(p.src)
    M.assert_owner(p.dst, p.src, eid, 101, running=True, what="the return refused",
                   other_uses_veid=True)
    assert os.path.isdir(kept), os.listdir(p.src.private_root)
    assert M.content_hash(os.path.join(kept, "data.bin")) == before
    assert not M.staging_left(p.src), M.staging_left(p.src)
    # and the next return takes it as it should
    with p.dst.client() as cb:
        m = M.migrate(cb, M.mig_packet(p.src, eid, ct_admin, options="<type>0</type>"))
        expect_ok(m, p, "the return after the restart")
    assert "starting from this node's earlier copy" in p.src.node.log(), p.src.log_excerpt()
    M.assert_owner(p.src, p.dst, eid, 101, running=True, what="returned",
                   other_uses_veid=True)


@pytest.mark.parametrize("case", ["committed", "not_committed", "source_restarted"])
def test_commit_in_doubt_is_settled_when_the_destination_returns(ct_nodes, ct_admin, case):
    """The destination dies during the commit and stays down past the source's status
    retries: the call fails ("outcome unknown") and the container stays stopped and locked on
    the source: a second migration, a start or a destroy is refused as busy (a second
    migration elsewhere would make two owners). When the destination is back, the source
    learns the outcome by itself, without a restart of its own: committed → its copy is
    retired, the container runs on the destination; not committed → it runs again on the
    source. source_restarted: the source agent is also killed while in doubt and comes back
    while the destination is still down; its start-up cannot tell, so the same holds."""
    point = "dst_before_rename" if case == "not_committed" else "dst_after_commit"
    p = M.Pair(ct_nodes, ct_admin, dst_fault=point)
    with p.src.client() as ca:
        eid, mig = migrate_and_kill_dst_at(p, ca, point)
        if case == "source_restarted":
            ok = H.wait_for(lambda: "status from" in p.src.node.log(), 30, 0.1)
            assert ok, p.src.log_excerpt()
            p.src.kill9()
            M.restart(p.src)
        else:
            r = mig.finish(90)
            assert r.error is not None and "outcome unknown" in (r.error[1] or ""), r.text
    with p.src.client() as ca:
        assert M.info(ca, eid)[0] == F.ST_DOWN, M.info(ca, eid)
        assert p.src.lxc_state(101) == "STOPPED"
        # locked: nothing may move, start or remove it while nobody knows who owns it
        m2 = M.migrate(ca, M.mig_packet(p.dst, eid, ct_admin, options="<type>0</type>"))
        expect_code(m2, p, E_BUSY, "a second migration while in doubt")
        for call in ("start", "destroy"):
            r = ca.call(F.envm_packet("<%s><eid>%s</eid></%s>" % (call, eid, call)))
            assert r.code == E_BUSY, "%s while in doubt: %r\n%s" % (call, r.error, r.text)
    assert os.path.isdir(os.path.join(p.src.private_root, "101"))
    M.disarm(p.dst)
    M.restart(p.dst)
    if case == "not_committed":
        owner, other = p.src, p.dst
    else:
        owner, other = p.dst, p.src
    ok = H.wait_for(lambda: "settled; container" in p.src.node.log(), 60, 0.2)
    assert ok, "the source never settled the migration%s" % logs(p)
    M.assert_owner(owner, other, eid, 101, running=True, what="settled (%s)" % case)
    assert os.path.isdir(migrated_path(p.src, 101)) == (owner is p.dst)
    # and it is free again: it goes (back) to the other node
    with owner.client() as c:
        m = M.migrate(c, M.mig_packet(other, eid, ct_admin, options="<type>0</type>"))
        expect_ok(m, p, "the migration after the doubt was settled")
    M.assert_owner(other, owner, eid, 101, running=True, what="moved after the doubt",
                   other_uses_veid=True)


def stranded_in_doubt(p, ca, point):
    """A running container migrating from p.src, whose destination is killed at its fault
    `point` during the commit and stays down: the call gives up ("outcome unknown") and
    the container is left in doubt on the source. Returns (eid, the hash of its data)."""
    eid, mig = migrate_and_kill_dst_at(p, ca, point)
    before = M.content_hash(os.path.join(p.src.private_root, "101", "data.bin"))
    r = mig.finish(90)
    assert r.error is not None and "outcome unknown" in (r.error[1] or ""), r.text
    return eid, before


def settle_cli(ctagent_bin, home, node, admin, eid, *args):
    """`ctagent settle` run against node as the test's admin: (exit status, a description)."""
    env = {"HOME": home, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "CTAGENT_PASSWORD": admin.admin_pw}
    argv = ["-H", "%s:%d" % node.node.tls_addr, "-u", admin.admin, "settle", eid] + list(args)
    r = subprocess.run([ctagent_bin] + argv, env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=180)
    return r.returncode, "ctagent %s -> exit %d\nstdout: %s\nstderr: %s" % (
        " ".join(argv), r.returncode, r.stdout.decode(errors="replace"),
        r.stderr.decode(errors="replace"))


@pytest.mark.parametrize("case", ["moved", "stays", "the_answer_wins"])
def test_operator_settles_a_migration_in_doubt(ct_nodes, ct_admin, ctagent_bin, tmp_path, case):
    """The destination dies during the commit and does not come back: the container stays
    stopped and locked on the source. `ctagent settle` is the operator's way out.
    moved (the destination had committed): the source retires its copy, kept renamed with
    its data (never deleted), and forgets the container; when the destination returns it
    owns it and runs it. stays (it had not): the container runs on the source again, and a
    second settle answers 406; the returning destination has nothing. the_answer_wins: the
    destination is back when the operator says "stays" though it committed: the node asks
    it first, settles by its answer (the copy is retired) and the command fails with 511
    saying so. Without --yes and no terminal the command refuses (exit 2), touching
    nothing."""
    point = "dst_before_rename" if case == "stays" else "dst_after_commit"
    home = str(tmp_path / "home")
    os.makedirs(home)
    p = M.Pair(ct_nodes, ct_admin, dst_fault=point)
    with p.src.client() as ca:
        eid, before = stranded_in_doubt(p, ca, point)
        assert M.info(ca, eid)[0] == F.ST_DOWN, M.info(ca, eid)
    rc, desc = settle_cli(ctagent_bin, home, p.src, ct_admin, eid, "--moved")
    assert rc == 2 and "add --yes" in desc, desc
    if case == "the_answer_wins":
        # after the job's third ask (t = 2, 6, 14 s after the call gave up) it waits 16 s:
        # time to bring the destination back and settle before it asks again
        ok = H.wait_for(lambda: p.src.node.log().count("status from") >= 8, 60, 0.1)
        assert ok, p.src.log_excerpt()
        M.disarm(p.dst)
        M.restart(p.dst)
    verdict = "--stays" if case != "moved" else "--moved"
    rc, desc = settle_cli(ctagent_bin, home, p.src, ct_admin, eid, verdict, "--yes")
    if case == "the_answer_wins":
        assert rc == 1 and "error 511" in desc and "moved there" in desc, desc + logs(p)
    else:
        assert rc == 0 and "settled: container %s" % eid in desc, desc + logs(p)
        assert "settled by the operator" in p.src.node.log(), p.src.log_excerpt()
        M.disarm(p.dst)
        M.restart(p.dst)
    if case == "stays":
        M.assert_owner(p.src, p.dst, eid, 101, running=True, what="settled: stays")
        kept = [os.path.join(p.src.private_root, "101")]
        assert not os.path.exists(migrated_path(p.src, 101))
        rc, desc = settle_cli(ctagent_bin, home, p.src, ct_admin, eid, "--stays", "--yes")
        assert rc == 1 and "error 406" in desc, desc
    else:
        M.assert_owner(p.dst, p.src, eid, 101, running=True, what="settled: %s" % case)
        kept = [migrated_path(p.src, 101), os.path.join(p.dst.private_root, "101")]
    # nothing lost: the container's data as it was before the migration, on every copy
    for d in kept:
        assert M.content_hash(os.path.join(d, "data.bin")) == before, d


def test_retire_that_fails_is_tried_again(ct_nodes, ct_admin, ctagent_bin, tmp_path):
    """The retire after a commit fails (the source's private root is made immutable, so
    the rename to .migrated fails): the container stays locked on the source, which owns
    nothing any more on paper, and the in-doubt job retires it once the rename works again.
    Driven here by the operator's `settle --moved` (journaled as committed before the
    retire, so the job's retry keeps the copy too)."""
    point = "dst_after_commit"
    home = str(tmp_path / "home")
    os.makedirs(home)
    p = M.Pair(ct_nodes, ct_admin, dst_fault=point)
    with p.src.client() as ca:
        eid, before = stranded_in_doubt(p, ca, point)
    root = p.src.private_root
    F.run(["chattr", "+i", root], check=True)
    try:
        rc, desc = settle_cli(ctagent_bin, home, p.src, ct_admin, eid, "--moved", "--yes")
        assert rc == 1 and "rename" in desc, desc + logs(p)
        assert ("src", "committed") in M.journal_states(p.src), M.journal_states(p.src)
        with p.src.client() as ca:
            r = ca.call(F.envm_packet("<start><eid>%s</eid></start>" % eid))
            assert r.code == E_BUSY, "start after a failed retire: %r\n%s" % (r.error, r.text)
    finally:
        F.run(["chattr", "-i", root], check=True)
    ok = H.wait_for(lambda: "settled; container" in p.src.node.log(), 90, 0.2)
    assert ok, "the job never retired the copy%s" % logs(p)
    log = p.src.node.log()
    assert -1 < log.find("retire %s: rename" % eid) < log.find("settled; container"), log
    M.disarm(p.dst)
    M.restart(p.dst)
    M.assert_owner(p.dst, p.src, eid, 101, running=True, what="retired on the second try")
    for d in (migrated_path(p.src, 101), os.path.join(p.dst.private_root, "101")):
        assert M.content_hash(os.path.join(d, "data.bin")) == before, d


def test_cancel_mid_copy(ct_nodes, ct_admin):
    """system/cancel with the migration's id on the same connection while data flows: error
    107, rolled back (running on the source, nothing on the destination); the retry works."""
    p = M.Pair(ct_nodes, ct_admin)
    with p.src.client() as ca:
        eid = new_ct(p, ca, 101, data_mb=300)
        with M.SlowCpu(p.dst, SLOW):
            mig = M.Migration(ca, M.mig_packet(p.dst, eid, ct_admin, options="<type>0</type>"))
            # (the running container's copy while it runs: the first pass)
            mig.wait_progress(lambda r: M.progress_params(r).get("phase", "").startswith(
                "copying data while the container runs,") and
                int(M.progress_params(r)["bytes_done"]) > 0)
            cid = H.new_id("cancel")
            ca.send(H.system_call("<cancel><message_id>%s</message_id></cancel>" % mig.id,
                                  id=cid))
            t0 = time.monotonic()
            cancel_reply = None
            while mig.reply is None:
                try:
                    r = mig.next(15)
                except (socket.timeout, TimeoutError):
                    raise AssertionError("no reply within 15 s of the cancel%s" % logs(p))
                if r.id == cid:
                    cancel_reply = r
        expect_code(mig, p, E_CANCELLED, "cancelled migration")
        # (it includes the container's start again on the source: slower under ASan)
        assert time.monotonic() - t0 < 20, "the cancel took %.1f s" % (time.monotonic() - t0)
        if cancel_reply is None:
            cancel_reply = ca.recv(10)
        assert cancel_reply.id == cid and cancel_reply.is_ok, cancel_reply.text
        M.assert_owner(p.src, p.dst, eid, 101, running=True, what="after cancel")
        retry_succeeds(p, ca, eid, 101, "cancel")


# ---------------------------------------------------------------------------------------------
# 4. Concurrency

def test_two_migrations_at_once_and_busy(ct_nodes, ct_admin):
    p = M.Pair(ct_nodes, ct_admin)
    with p.src.client() as c1, p.src.client() as c2, p.src.client() as c3:
        e1 = new_ct(p, c1, 101, data_mb=150)
        e2 = new_ct(p, c1, 102, data_mb=150)
        with M.SlowCpu(p.dst, SLOW):
            m1 = M.Migration(c1, M.mig_packet(p.dst, e1, ct_admin, options="<type>0</type>"))
            m2 = M.Migration(c2, M.mig_packet(p.dst, e2, ct_admin, options="<type>0</type>"))
            m1.wait_progress(lambda r: M.progress_params(r).get("phase", "").startswith(
                "copying "))
            busy = M.migrate(c3, M.mig_packet(p.dst, e1, ct_admin, options="<type>0</type>"))
            m2.wait_progress(lambda r: M.progress_params(r).get("phase", "").startswith(
                "copying "))
            both_copying = m1.reply is None and m2.reply is None
            m1.finish()
            m2.finish()
        expect_ok(m1, p, "first of two")
        expect_ok(m2, p, "second of two")
        expect_code(busy, p, E_BUSY, "a second migrate of the same container")
    assert both_copying, "the two migrations did not overlap"
    M.assert_owner(p.dst, p.src, e1, 101, running=True, what="first of two")
    M.assert_owner(p.dst, p.src, e2, 102, running=True, what="second of two")
