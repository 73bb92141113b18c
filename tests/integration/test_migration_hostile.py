"""A hostile migration source: a test client logs in to a destination agent and speaks ctamig
itself (hello, stream + binary frames, abort) with hand-made tree streams
(src/migrate/wire.h: little-endian records) that try to escape the staging area, lie about
sizes and counts, carry bad checksums or stop mid-stream. Every one is refused with an error
reply, nothing is created outside the staging area, nothing is left behind, and the
destination keeps serving other clients.

A valid hand-made stream is accepted first (the control: the encoder below is right, so the
refusals are the receiver's doing).
"""

import ctypes
import os
import socket
import struct
import time
import uuid

import pytest

import ctahelpers as H
import ctfixtures as F
import migfixtures as M
from ctfixtures import ct_nodes, ct_template_dir  # noqa: F401 (fixtures)
from migfixtures import ct_admin  # noqa: F401 (fixture, see there why not ctfixtures')
from test_containers import create

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: runs real agents as root"),
]

E_TOO_LARGE, E_CHECK = 104, 503
E_CHECKSUM, E_PATH, E_STREAM = 505, 506, 507

# ---------------------------------------------------------------------------------------------
# The stream encoder (only what the tests need)

STREAM_VERSION = 1  # CTA_MIG_STREAM_VERSION; the control test fails first if it changes
R_HEADER, R_ENTRY, R_DATA, R_FILE_END, R_TRAILER = 1, 2, 3, 4, 6
K_REG, K_DIR, K_LNK, K_HARDLINK = 1, 2, 3, 8
EF_ROOT, EF_LINKABLE = 1, 2


class _H128(ctypes.Structure):
    _fields_ = [("low64", ctypes.c_uint64), ("high64", ctypes.c_uint64)]


_xxh = None


def xxh128(data):
    """XXH3-128 of data, canonical (big endian), through the system's libxxhash."""
    global _xxh
    if _xxh is None:
        try:
            lib = ctypes.CDLL("libxxhash.so.0")
        except OSError:
            pytest.skip("libxxhash.so.0 is not installed")
        _xxh = lib.XXH3_128bits
        _xxh.restype = _H128
        _xxh.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    h = _xxh(data, len(data))
    return struct.pack(">QQ", h.high64, h.low64)


def rec(rtype, payload, length=None):
    return struct.pack("<BBHI", rtype, 0, 0, len(payload) if length is None else length) + \
        payload


def header(entries, nbytes):
    return rec(R_HEADER, b"CTAMIG\r\n" + struct.pack("<HHIQQQQ", STREAM_VERSION, STREAM_VERSION,
                                                      0, entries, nbytes, 0, 0))


def entry(eid, kind, path, *, flags=0, mode=0o644, uid=0, gid=0, size=0, link_id=0,
          target=b"", xattrs=(), nxattr=None, mtime=1700000000):
    path = path.encode() if isinstance(path, str) else path
    target = target.encode() if isinstance(target, str) else target
    xa = b"".join(struct.pack("<BBI", len(n), 0, len(v)) + n + v for n, v in xattrs)
    fixed = struct.pack("<QBBHIIIQIIQQIIQHHI", eid, kind, flags, len(path), mode, uid, gid,
                        mtime, 5, 0, mtime, size, 0, 0, link_id, len(target),
                        len(xattrs) if nxattr is None else nxattr, len(xa))
    assert len(fixed) == 80
    return rec(R_ENTRY, fixed + path + target + xa)


def data(offset, blob):
    return rec(R_DATA, struct.pack("<Q", offset) + blob)


def file_end(nbytes, checksum):
    return rec(R_FILE_END, struct.pack("<Q", nbytes) + checksum)


def trailer(entries, nbytes, deletes=0):
    return rec(R_TRAILER, struct.pack("<QQQ", entries, nbytes, deletes))


def root():
    return entry(0, K_DIR, b"", flags=EF_ROOT, mode=0o755)


def reg(eid, path, blob, flags=0, checksum=None):
    return entry(eid, K_REG, path, size=len(blob), flags=flags) + \
        (data(0, blob) if blob else b"") + file_end(len(blob), checksum or xxh128(blob))


def stream(body_entries, body, nbytes):
    """header + body + trailer; body_entries counts the root too."""
    return header(body_entries, nbytes) + body + trailer(body_entries, nbytes)


def binframe(payload):
    return b"\x01" + struct.pack(">I", len(payload)) + payload


def valid_stream():
    """root, dir 'etc', file 'etc/hostname', a hard link to it, a symlink."""
    blob = b"hostile-but-valid\n"
    body = (root() + entry(1, K_DIR, "etc", mode=0o755) +
            reg(2, "etc/hostname", blob, flags=EF_LINKABLE) +
            entry(3, K_HARDLINK, "etc/hostname2", link_id=2) +
            entry(4, K_LNK, "etc/link", mode=0o777, target="hostname"))
    return stream(5, body, len(blob))


# ---------------------------------------------------------------------------------------------
# The hostile client

class HostileSource:
    def __init__(self, dst, admin, *, eid=None, veid=4242):
        self.dst = dst
        self.c = dst.node.client(tls=True, timeout=30)
        self.c.login_ok(admin.admin, admin.admin_pw)
        self.id = str(uuid.uuid4())
        self.eid = eid or str(uuid.uuid4())
        self.veid = veid

    def close(self):
        self.c.close()

    def call(self, name, inner, timeout=30):
        pid = H.new_id("hostile")
        pkt = H.packet("<ctamig><%s>%s</%s></ctamig>" % (name, inner, name), id=pid,
                       target="ctamig")
        return self.c.call(pkt, timeout=timeout)

    def hello(self, *, nbytes=1000, inodes=10, extra=""):
        return self.call("hello", "<id>%s</id><version_min>1</version_min>"
                         "<version_max>1</version_max><eid>%s</eid><veid>%d</veid>"
                         "<name>%s</name><bytes>%d</bytes><inodes>%d</inodes>%s"
                         % (self.id, self.eid, self.veid, H.b64("hostile%d" % self.veid),
                            nbytes, inodes, extra))

    def stream(self, payload, *, frames=1, close_after=False, timeout=30):
        """Open the stream and send payload as binary frames (one by default: a receiver that
        fails early must not see frames after its failure). Returns the stream reply, or None
        with close_after (the connection is closed right after the data)."""
        sid = H.new_id("stream")
        self.c.send(H.packet("<ctamig><stream><id>%s</id></stream></ctamig>" % self.id,
                             id=sid, target="ctamig"))
        step = max(1, -(-len(payload) // frames))
        self.c.send_raw(b"".join(binframe(payload[i:i + step])
                                 for i in range(0, len(payload), step)))
        if close_after:
            self.close()
            return None
        deadline = time.monotonic() + timeout
        while True:
            r = self.c.recv(max(0.1, deadline - time.monotonic()))
            if r.id == sid:
                return r

    def abort(self):
        return self.call("abort", "<id>%s</id>" % self.id)


# ---------------------------------------------------------------------------------------------
# Fixture: one destination node with a sentinel directory outside its state

class Dst:
    def __init__(self, ct, admin):
        self.ct, self.admin = ct, admin
        self.sentinel = os.path.join(ct.node.workdir, "sentinel")
        os.makedirs(self.sentinel, exist_ok=True)
        with open(os.path.join(self.sentinel, "keep"), "w") as f:
            f.write("untouched\n")

    def snapshot(self):
        """What must not change: the state dir's top level, the private root, the sentinel
        directory, and /tmp's top level."""
        def ls(d):
            try:
                return sorted(os.listdir(d))
            except FileNotFoundError:
                return None
        st = os.stat(os.path.join(self.sentinel, "keep"))
        return {"state": ls(self.ct.state_dir), "private": ls(self.ct.private_root),
                "sentinel": ls(self.sentinel), "workdir": ls(self.ct.node.workdir),
                "keep": (st.st_nlink, st.st_mtime_ns, st.st_size)}


@pytest.fixture
def hdst(ct_nodes, ct_admin):
    ct = ct_nodes.start(host="127.0.0.12")
    return Dst(ct, ct_admin)


def assert_clean(d, before, what, mig_id=None):
    after = d.snapshot()
    # the node may have created its journal's side files meanwhile; compare what matters
    for k in ("private", "sentinel", "keep", "workdir"):
        assert after[k] == before[k], "%s: %s changed: %r → %r\n%s" % (
            what, k, before[k], after[k], d.ct.log_excerpt(30))
    extra = set(after["state"] or []) - set(before["state"] or [])
    assert not [x for x in extra if not x.startswith("ctagent.db")], \
        "%s: new entries in the state dir: %r" % (what, extra)
    assert M.staging_left(d.ct) == [], what
    if mig_id:
        rows = dict(_journal(d.ct))
        assert rows.get(mig_id.lower()) == "failed", "%s: journal %r" % (what, rows)


def _journal(ct):
    rc, out = F.run(["sqlite3", os.path.join(ct.state_dir, "ctagent.db"),
                     "select lower(id), state from migrations where role = 'dst'"])
    return [tuple(l.split("|")) for l in out.strip().splitlines() if "|" in l]


def still_serves(d):
    with d.ct.client() as c:
        H.expect_ok(c.ping(), "ping after a hostile stream")
        r = c.call(F.envm_packet("<get_list/>"), timeout=30)
        assert r.error is None, r.text
    d.ct.node.check_alive()


def run_case(d, payload, code, what, *, frames=1, msg=None):
    before = d.snapshot()
    h = HostileSource(d.ct, d.admin)
    try:
        H.expect_ok(h.hello(), "hello (%s)" % what)
        r = h.stream(payload, frames=frames)
        assert r.code == code, "%s: expected error %s, got %r\n%s\n%s" % (
            what, code, r.error, r.text, d.ct.log_excerpt(20))
        if msg:
            assert msg in (r.error[1] or ""), "%s: %r" % (what, r.error)
        # the migration is over on the destination: commit is refused
        rc = h.call("commit", "<id>%s</id><start>0</start>" % h.id)
        assert rc.error is not None, "commit after a refused stream:\n" + rc.text
    finally:
        h.close()
    assert_clean(d, before, what, h.id)
    assert not os.path.exists(os.path.join(d.ct.private_root, "4242"))


# ---------------------------------------------------------------------------------------------
# Tests

def test_valid_hand_made_stream_is_accepted(hdst):
    """The control: the encoder here is right. Then abort removes the staging area."""
    d = hdst
    before = d.snapshot()
    h = HostileSource(d.ct, d.admin)
    try:
        r = H.expect_ok(h.hello(), "hello")
        assert r.iter("token"), r.text
        r = h.stream(valid_stream(), frames=3)
        assert r.error is None, "valid stream refused: %r\n%s" % (r.error, d.ct.log_excerpt(20))
        staging = M.staging_left(d.ct)
        assert len(staging) == 1, staging
        with open(os.path.join(staging[0], "etc", "hostname"), "rb") as f:
            assert f.read() == b"hostile-but-valid\n"
        a = os.lstat(os.path.join(staging[0], "etc", "hostname"))
        b = os.lstat(os.path.join(staging[0], "etc", "hostname2"))
        assert a.st_ino == b.st_ino
        assert os.readlink(os.path.join(staging[0], "etc", "link")) == "hostname"
        H.expect_ok(h.abort(), "abort")
    finally:
        h.close()
    assert_clean(d, before, "valid stream, aborted", h.id)
    still_serves(d)


def test_paths_that_escape(hdst):
    d = hdst
    blob = b"pwned\n"
    out = d.sentinel
    cases = [  # (what, body, entries with the root)
        ("../ path", root() + reg(1, "../escaped", blob), 2),
        ("../../ path", root() + reg(1, "../../escaped", blob), 2),
        ("a/../../ path", root() + entry(1, K_DIR, "a", mode=0o755) +
         reg(2, "a/../../escaped", blob), 3),
        ("absolute path", root() + reg(1, out + "/abs", blob), 2),
        ("NUL in a path", root() + reg(1, b"a\0b", blob), 2),
        ("empty component", root() + entry(1, K_DIR, "a", mode=0o755) +
         reg(2, "a//escaped", blob), 3),
    ]
    for what, body, n in cases:
        run_case(d, stream(n, body, len(blob)), E_PATH, what)
        assert not os.path.exists(os.path.join(d.ct.state_dir, "escaped"))
        assert not os.path.exists(os.path.join(d.ct.node.workdir, "escaped"))
        assert not os.path.exists(os.path.join(out, "abs"))
    still_serves(d)


def test_symlink_then_file_through_it(hdst):
    d = hdst
    blob = b"through the link\n"
    for what, target in (("absolute symlink", d.sentinel), ("symlink to ..", ".."),
                         ("symlink to ../..", "../..")):
        body = (root() + entry(1, K_LNK, "link", mode=0o777, target=target) +
                reg(2, "link/pwned", blob))
        before = d.snapshot()
        h = HostileSource(d.ct, d.admin)
        try:
            H.expect_ok(h.hello(), "hello")
            r = h.stream(stream(3, body, len(blob)))
            assert r.code == E_PATH, "%s: %r\n%s" % (what, r.error, r.text)
        finally:
            h.close()
        assert_clean(d, before, what, h.id)
        for p in (os.path.join(d.sentinel, "pwned"), os.path.join(d.ct.private_root, "pwned"),
                  os.path.join(d.ct.state_dir, "pwned")):
            assert not os.path.exists(p), "%s: %s was created" % (what, p)
    # a directory through a symlink too
    body = (root() + entry(1, K_LNK, "link", mode=0o777, target=d.sentinel) +
            entry(2, K_DIR, "link/newdir", mode=0o755))
    run_case(d, stream(3, body, 0), E_PATH, "directory through a symlink")
    assert not os.path.exists(os.path.join(d.sentinel, "newdir"))
    still_serves(d)


def test_hard_links_to_nowhere_and_outside(hdst):
    d = hdst
    blob = b"x\n"
    keep = os.path.join(d.sentinel, "keep")
    cases = [  # (what, body, entries with the root, data bytes)
        ("hard link to an id never sent",
         root() + entry(1, K_HARDLINK, "h", link_id=7), 2, 0),
        ("hard link to its own id",
         root() + entry(1, K_HARDLINK, "h", link_id=1), 2, 0),
        ("hard link to a directory",
         root() + entry(1, K_DIR, "d", mode=0o755) + entry(2, K_HARDLINK, "h", link_id=1),
         3, 0),
        ("hard link to a file not marked linkable",
         root() + reg(1, "f", blob) + entry(2, K_HARDLINK, "h", link_id=1), 3, len(blob)),
        ("hard link to a symlink pointing outside",
         root() + entry(1, K_LNK, "a", mode=0o777, target=keep) +
         entry(2, K_HARDLINK, "h", link_id=1), 3, 0),
    ]
    for what, body, n, nb in cases:
        run_case(d, stream(n, body, nb), E_STREAM, what)
        assert os.stat(keep).st_nlink == 1, "%s: the sentinel got a hard link" % what
    still_serves(d)


def test_bad_checksums_and_lying_sizes(hdst):
    d = hdst
    blob = b"some file content\n" * 10
    wrong = bytes(16)
    cases = [
        ("wrong checksum", root() + reg(1, "f", blob, checksum=wrong), 2, len(blob),
         E_CHECKSUM),
        ("checksum of other data", root() + reg(1, "f", blob, checksum=xxh128(blob[:-1])),
         2, len(blob), E_CHECKSUM),
        ("data past the declared size",
         root() + entry(1, K_REG, "f", size=4) + data(0, blob) +
         file_end(len(blob), xxh128(blob)), 2, len(blob), E_STREAM),
        ("file end counts more data than sent",
         root() + entry(1, K_REG, "f", size=len(blob)) + data(0, blob) +
         file_end(len(blob) + 1, xxh128(blob)), 2, len(blob), E_STREAM),
        ("trailer counts differ", root() + reg(1, "f", blob), 5, len(blob), E_STREAM),
    ]
    for what, body, n, nb, code in cases:
        if what == "trailer counts differ":
            payload = header(2, nb) + body + trailer(n, nb)
        else:
            payload = stream(n, body, nb)
        run_case(d, payload, code, what)
    still_serves(d)


def test_oversized_counts(hdst):
    d = hdst
    xattrs = [(b"user.a%d" % i, b"v") for i in range(300)]
    big_record = rec(R_ENTRY, b"\0" * 16, length=64 << 20)
    cases = [
        ("2^40 entries declared", header(1 << 40, 0) + root() + trailer(1, 0)),
        ("a 2^50-byte file", header(2, 0) + root() +
         entry(1, K_REG, "f", size=1 << 50) + file_end(0, xxh128(b""))),
        ("300 xattrs", header(2, 0) + root() + entry(1, K_DIR, "d", mode=0o755,
                                                     xattrs=xattrs)),
        ("a 64 MiB record", header(2, 0) + root() + big_record),
    ]
    for what, payload in cases:
        run_case(d, payload, E_TOO_LARGE, what)
    # an xattr count that does not match the xattr area
    run_case(d, stream(2, root() + entry(1, K_DIR, "d", mode=0o755, xattrs=[(b"user.x", b"1")],
                                          nxattr=2), 0), E_STREAM, "nxattr 2 with one xattr")
    still_serves(d)


def test_stream_larger_than_hello_declared(hdst):
    """hello declares 1000 bytes and 10 inodes (the space check passes for that); the stream
    may not carry more than that plus the margin (docs/limits.md)."""
    d = hdst
    blob = os.urandom(3 << 20)
    body = root() + reg(1, "f", blob)
    run_case(d, header(2, 1 << 62) + body + trailer(2, len(blob)), E_TOO_LARGE,
             "stream declares 2^62 bytes after hello said 1000")
    run_case(d, header(1 << 20, 0) + body + trailer(2, len(blob)), E_TOO_LARGE,
             "stream declares 2^20 entries after hello said 10")
    # the header lies too (5 entries) and 1300 follow: refused when the count passes the limit
    many = root() + b"".join(entry(i, K_DIR, "d%06d" % i, mode=0o755) for i in range(1, 1300))
    run_case(d, header(5, 0) + many + trailer(1300, 0), E_TOO_LARGE,
             "1300 entries after hello said 10 (limit 10 + 1 + 1000)", msg="entries")


def test_truncated_stream(hdst):
    """The source closes the connection mid-stream (mid-record): the staging area goes, the
    journal says failed. And a stream that ends mid-record but keeps the connection open gets
    its error when the source aborts."""
    d = hdst
    blob = os.urandom(3 << 20)
    full = stream(2, root() + reg(1, "big", blob), len(blob))
    before = d.snapshot()
    h = HostileSource(d.ct, d.admin)
    H.expect_ok(h.hello(nbytes=len(blob)), "hello")
    h.stream(full[:len(full) // 2], frames=4, close_after=True)
    ok = H.wait_for(lambda: not M.staging_left(d.ct) and dict(_journal(d.ct)).get(h.id) ==
                    "failed", 10, 0.05)
    assert ok, "after a truncated stream: staging %r, journal %r\n%s" % (
        M.staging_left(d.ct), _journal(d.ct), d.ct.log_excerpt(20))
    assert_clean(d, before, "truncated stream", h.id)
    # Truncated, connection kept: the source gives up with abort → the stream call fails.
    before = d.snapshot()
    h = HostileSource(d.ct, d.admin)
    try:
        H.expect_ok(h.hello(nbytes=len(blob)), "hello")
        sid = H.new_id("stream")
        h.c.send(H.packet("<ctamig><stream><id>%s</id></stream></ctamig>" % h.id, id=sid,
                          target="ctamig"))
        h.c.send_raw(binframe(full[:len(full) // 2]))
        time.sleep(0.3)
        aid = H.new_id("abort")
        h.c.send(H.packet("<ctamig><abort><id>%s</id></abort></ctamig>" % h.id, id=aid,
                          target="ctamig"))
        got = {}
        deadline = time.monotonic() + 20
        while len(got) < 2 and time.monotonic() < deadline:
            r = h.c.recv(max(0.1, deadline - time.monotonic()))
            if r.id in (sid, aid):
                got[r.id] = r
        assert sid in got and got[sid].error is not None, got
        # 107 (cancelled) would be the exact answer; 508 is what the receiver makes of it
        # (reported: it reads the queue's -CTA_E_CANCELLED as errno 107, ENOTCONN)
        assert got[sid].code in (107, E_STREAM, 508), got[sid].error
    finally:
        h.close()
    assert_clean(d, before, "truncated stream + abort", h.id)
    still_serves(d)


def test_binary_frame_without_stream_and_hello_checks(hdst, ct_admin):
    """A binary frame with no stream open closes the connection; hello refuses an eid that the
    destination already has (503 naming it) and never creates anything."""
    d = hdst
    h = HostileSource(d.ct, d.admin)
    try:
        h.c.send_raw(binframe(valid_stream()))
        r = h.c.recv(10)
        assert r.error is not None, r.text
        assert h.c.wait_closed(10), "the connection stayed open"
    finally:
        h.close()
    with d.ct.client() as c:
        _, env = create(c, name="resident", veid=300, ip=d.ct.ip(30))
        eid = env["eid"]
    before = d.snapshot()
    h = HostileSource(d.ct, d.admin, eid=eid, veid=300)
    try:
        r = h.hello()
        assert r.code == E_CHECK, r.text
        assert eid in r.error[1] and "veid 300" in r.error[1], r.error
        r = h.stream(valid_stream())
        assert r.error is not None, "stream without a successful hello:\n" + r.text
    finally:
        h.close()
    after = d.snapshot()
    assert after["private"] == before["private"] and M.staging_left(d.ct) == []
    still_serves(d)


def test_link_probe_drops_frames_only_between_begin_and_end(hdst):
    """ctamig/probe (automatic compression): only for a logged-in peer; a bad state is 204;
    frames between begin and end are dropped whatever they hold (a valid stream too: no
    staging area, nothing written); after end a frame without a stream closes the
    connection again."""
    d = hdst
    before = d.snapshot()
    with d.ct.node.client(tls=True, timeout=30) as c:  # not logged in
        r = c.call(H.packet("<ctamig><probe><state>begin</state></probe></ctamig>",
                            target="ctamig"))
        assert r.error is not None, r.text
    h = HostileSource(d.ct, d.admin)
    try:
        r = h.call("probe", "<state>sideways</state>")
        assert r.code == 204 and "probe state" in r.error[1], r.text
        r = h.call("probe", "<state>begin</state>")
        assert r.error is None, r.text
        h.c.send_raw(binframe(valid_stream()) + binframe(os.urandom(1 << 20)) +
                     binframe(b"\0" * (4 << 20)))
        r = h.call("probe", "<state>end</state>")
        assert r.error is None, r.text
        h.c.send_raw(binframe(b"late"))
        r = h.c.recv(10)
        assert r.error is not None, r.text
        assert h.c.wait_closed(10), "the connection stayed open"
    finally:
        h.close()
    after = d.snapshot()
    assert after["private"] == before["private"] and M.staging_left(d.ct) == []
    still_serves(d)


# ---------------------------------------------------------------------------------------------
# The source's session ends while the destination still works on the migration

def _paused_dst(ct_nodes, admin, point, ms=1500):
    """A destination whose daemon sleeps ms at a fault point of src/daemon/mig.h."""
    ct = ct_nodes.new(host="127.0.0.12")
    M.arm_fault(ct, point, pause_ms=ms)
    ct.start()
    return Dst(ct, admin)


def _reset(h):
    """Close the source's connection with a TCP reset: the destination sees it at once, even
    while a serial call has its reads paused."""
    h.c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.c.sock.close()
    h.c.closed = True


def _status(d, h, token):
    """ctamig/status from a new connection, before login, as a source in doubt asks it."""
    c = d.ct.node.client(tls=True, timeout=30)
    try:
        r = c.call(H.packet("<ctamig><status><id>%s</id><token>%s</token></status></ctamig>"
                            % (h.id, token), id=H.new_id("status"), target="ctamig"))
        assert r.error is None, r.text
        st = r.iter("state")
        return (st[0].text or "").strip() if st else None
    finally:
        c.close()


def test_source_gone_while_the_last_stream_is_flushed(ct_nodes, ct_admin):
    """The source's connection closes after its last frame, while the destination still
    flushes the stream: nobody will commit or abort that migration, so the destination undoes
    it when the stream's call ends (before the fix it stayed open: the staging area kept and
    the container locked until a restart, so the source's retry was refused as busy)."""
    d = _paused_dst(ct_nodes, ct_admin, "dst_stream_tail")
    before = d.snapshot()
    eid = str(uuid.uuid4())
    h = HostileSource(d.ct, d.admin, eid=eid)
    H.expect_ok(h.hello(), "hello")
    h.c.send(H.packet("<ctamig><stream><id>%s</id></stream></ctamig>" % h.id,
                      id=H.new_id("stream"), target="ctamig"))
    h.c.send_raw(binframe(valid_stream()))
    M.wait_fault(d.ct, "dst_stream_tail")  # (every frame is in; the flush is to come)
    h.close()
    # (the log line comes after the journal's "failed" and the unlock)
    ok = H.wait_for(lambda: not M.staging_left(d.ct) and dict(_journal(d.ct)).get(h.id) ==
                    "failed" and "the source went away" in d.ct.node.log(), 15, 0.05)
    assert ok, "source gone during the flush: staging %r, journal %r\n%s" % (
        M.staging_left(d.ct), _journal(d.ct), d.ct.log_excerpt(20))
    os.unlink(M.fault_file(d.ct))  # (the hook's own file is not the migration's doing)
    assert_clean(d, before, "source gone during the flush", h.id)
    assert "the source went away" in d.ct.node.log(), d.ct.log_excerpt(20)
    # the container is not left locked: the retry's hello is accepted
    h2 = HostileSource(d.ct, d.admin, eid=eid)
    try:
        H.expect_ok(h2.hello(), "the retry's hello")
        H.expect_ok(h2.abort(), "abort")
    finally:
        h2.close()
    still_serves(d)


def test_reset_during_the_commit_does_not_undo_it(ct_nodes, ct_admin):
    """The source's connection is reset while the destination commits (a serial call, its
    reads paused, but a reset is seen at once): the commit is not undone under it, the
    destination owns the container, and status says committed (before the fix the session's
    end undid and freed the migration while the commit still used it)."""
    d = _paused_dst(ct_nodes, ct_admin, "dst_before_rename")
    h = HostileSource(d.ct, d.admin)
    r = H.expect_ok(h.hello(), "hello")
    token = [x.text for x in r.iter("token")][0]
    r = h.stream(valid_stream(), frames=2)
    assert r.error is None, r.text
    h.c.send(H.packet("<ctamig><commit><id>%s</id><start>0</start></commit></ctamig>" % h.id,
                      id=H.new_id("commit"), target="ctamig"))
    M.wait_fault(d.ct, "dst_before_rename")
    _reset(h)
    ok = H.wait_for(lambda: dict(_journal(d.ct)).get(h.id) in ("done", "failed"), 15, 0.05)
    assert ok, "journal %r\n%s" % (_journal(d.ct), d.ct.log_excerpt(20))
    assert dict(_journal(d.ct)).get(h.id) == "done", "%r\n%s" % (_journal(d.ct),
                                                               d.ct.log_excerpt(20))
    d.ct.node.check_alive()
    priv = os.path.join(d.ct.private_root, "4242")
    with open(os.path.join(priv, "etc", "hostname"), "rb") as f:
        assert f.read() == b"hostile-but-valid\n"
    assert M.staging_left(d.ct) == []
    assert M.db_rows(d.ct, h.eid) == 1
    assert "not taken" not in d.ct.node.log(), d.ct.log_excerpt(20)
    assert _status(d, h, token) == "committed"
    still_serves(d)


def test_status_fences_an_open_migration(hdst):
    """A source that asks status has given the migration up (or lost the commit's reply):
    "open" is then final, and a commit that arrives later is refused."""
    d = hdst
    before = d.snapshot()
    h = HostileSource(d.ct, d.admin)
    try:
        r = H.expect_ok(h.hello(), "hello")
        token = [x.text for x in r.iter("token")][0]
        r = h.stream(valid_stream())
        assert r.error is None, r.text
        assert _status(d, h, token) == "open"
        rc = h.call("commit", "<id>%s</id><start>0</start>" % h.id)
        assert rc.error is not None and "cannot commit" in (rc.error[1] or ""), rc.text
        assert not os.path.exists(os.path.join(d.ct.private_root, "4242"))
    finally:
        h.close()
    ok = H.wait_for(lambda: not M.staging_left(d.ct), 10, 0.05)
    assert ok, M.staging_left(d.ct)
    assert_clean(d, before, "fenced by status", h.id)
    still_serves(d)
