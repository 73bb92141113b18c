"""Helpers for the migrate_v2v tests (test_migration.py, test_migration_hostile.py): a pair of
container nodes, daemons started with extra environment (the CTA_FAULT test hook of
src/daemon/mig.h), the migrate_v2v request, a full manifest of a private area (content, mode,
owner, ns mtimes, xattrs, ACLs, hard-link groups, device numbers, sparseness) and the
"whole on exactly one node" check.

Built on ctfixtures.py (CtNode, CtFactory) and ctahelpers.py (Node, Client).
"""

import glob
import hashlib
import os
import re
import secrets
import socket
import sqlite3
import stat
import subprocess
import threading
import time

import pytest

import ctahelpers as H
import ctfixtures as F

MIG_TIMEOUT = 180.0


# ---------------------------------------------------------------------------------------------
# The administrator. Not ctfixtures.ct_admin: a session fixture imported into several test
# modules is instantiated once per module, and ctfixtures' creates the same user/group names
# each time ("groupadd: group 'ctctadm-PID' already exists" when test_containers.py and a
# migration module run in one session). This one has its own names and is created once per
# session, however many modules import it.

_admin = {"obj": None, "users": 0, "made": []}


def _remove_stale_mig_admins():
    import grp
    import pwd
    dead = lambda pid: not os.path.exists("/proc/%d" % pid)  # noqa: E731
    for pw in pwd.getpwall():
        m = re.match(r"^ctmig-(\d+)$", pw.pw_name)
        if m and dead(int(m.group(1))):
            F.run(["userdel", pw.pw_name])
    for g in grp.getgrall():
        m = re.match(r"^ctmigadm-(\d+)$", g.gr_name)
        if m and dead(int(m.group(1))):
            F.run(["groupdel", g.gr_name])
    for path in glob.glob("/etc/pam.d/ctmig-*"):
        m = re.match(r"^ctmig-(\d+)$", os.path.basename(path))
        if m and dead(int(m.group(1))):
            try:
                os.unlink(path)
            except OSError:
                pass


def _make_admin():
    _remove_stale_mig_admins()
    pid = os.getpid()
    user, group = "ctmig-%d" % pid, "ctmigadm-%d" % pid
    pam_path = "/etc/pam.d/" + user
    password = "Mg&<pw>'" + secrets.token_hex(8)
    F.run(["groupadd", "--system", group], check=True)
    _admin["made"].append(("groupdel", group))
    F.run(["useradd", "-M", "-s", "/usr/sbin/nologin", "-G", group, user], check=True)
    _admin["made"].append(("userdel", user))
    p = subprocess.run(["chpasswd"], input=("%s:%s\n" % (user, password)).encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert p.returncode == 0, "chpasswd: %s" % p.stdout.decode(errors="replace")
    with open(pam_path, "w") as f:
        f.write("# ctagent migration tests (tests/integration/migfixtures.py), removed at the "
                "end of the session\n@include common-auth\n@include common-account\n")
    os.chmod(pam_path, 0o644)
    _admin["made"].append(("unlink", pam_path))
    return F.CtAdmin(user, password, group, user)


def _drop_admin():
    for kind, what in reversed(_admin["made"]):
        if kind == "unlink":
            try:
                os.unlink(what)
            except OSError:
                pass
        else:
            F.run([kind, what])
    _admin["made"] = []
    _admin["obj"] = None


@pytest.fixture(scope="session")
def ct_admin():
    why = F.missing_requirements()
    if why:
        pytest.skip(why)
    if _admin["obj"] is None:
        try:
            _admin["obj"] = _make_admin()
        except BaseException:
            _drop_admin()
            raise
    _admin["users"] += 1
    try:
        yield _admin["obj"]
    finally:
        _admin["users"] -= 1
        if _admin["users"] == 0:
            _drop_admin()


# ---------------------------------------------------------------------------------------------
# Daemons with extra environment variables (ctahelpers.Node passes its own environment on)

class EnvNode(H.Node):
    """A Node whose daemon gets self.env on top of the test's environment (None = unset)."""

    env = None

    def spawn(self):
        saved = {}
        for k, v in (self.env or {}).items():
            saved[k] = os.environ.get(k)
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        try:
            return super().spawn()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def set_env(ct, **env):
    """The next (re)start of ct's daemon runs with these variables."""
    if not isinstance(ct.node, EnvNode):
        ct.node.__class__ = EnvNode
    ct.node.env = dict(env)


def fault_file(ct):
    return os.path.join(ct.node.workdir, "fault-point")


def arm_fault(ct, point, pause_ms=None):
    """Start (or restart) ct's daemon so that it blocks at `point` (or, with pause_ms, sleeps
    that long there and goes on); see src/daemon/mig.h."""
    ff = fault_file(ct)
    try:
        os.unlink(ff)
    except FileNotFoundError:
        pass
    set_env(ct, CTA_FAULT=point, CTA_FAULT_FILE=ff,
            CTA_FAULT_PAUSE_MS=str(pause_ms) if pause_ms else None)


def disarm(ct):
    set_env(ct, CTA_FAULT=None, CTA_FAULT_FILE=None, CTA_FAULT_PAUSE_MS=None)


def wait_fault(ct, point, timeout=60.0):
    ff = fault_file(ct)

    def hit():
        try:
            with open(ff) as f:
                return f.read().strip() == point
        except OSError:
            return False
    assert H.wait_for(hit, timeout, 0.02), "%s never reached fault point %s\n%s" % (
        ct.node.name, point, ct.log_excerpt(80))


def restart(ct):
    """Start a killed node again on the same state dir, with the same ports."""
    if ct.node.tls_addr:
        ct.node.tls_listen = "%s:%d" % ct.node.tls_addr
    if ct.node.plain_addr:
        ct.node.plain_listen = "%s:%d" % ct.node.plain_addr
    return ct.start()


class RegistryLock:
    """Holds the write lock of ct's registry (its SQLite database) for `hold` seconds from
    start(), in a thread, as another writer would: the daemon's writes meanwhile wait for its
    busy timeout (5 s) and then fail. release() ends the hold early; join() waits for the
    release."""

    def __init__(self, ct, hold):
        self.path, self.hold = os.path.join(ct.state_dir, "ctagent.db"), hold
        self.locked = threading.Event()
        self.released = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        con = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            con.execute("BEGIN EXCLUSIVE")
            self.locked.set()
            self.released.wait(self.hold)
            con.execute("COMMIT")
        finally:
            con.close()

    def start(self):
        self.thread.start()
        assert self.locked.wait(10), "could not lock " + self.path
        return self

    def release(self):
        self.released.set()

    def join(self):
        self.thread.join(self.hold + 20)


# ---------------------------------------------------------------------------------------------
# Two nodes

class Pair:
    """A source node on 127.0.0.11 and a destination on 127.0.0.12; src_fault/dst_fault arm
    the CTA_FAULT hook of that daemon from its first start.

    Unless src_config says otherwise the source sends uncompressed (migrate_compress = 0):
    these tests time copies of highly compressible fill data against a CPU-throttled
    destination, where the built-in default (auto) may compress and move their mid-copy
    points. builtin_compress=True keeps the built-in default."""

    def __init__(self, ct_nodes, admin, src_config=None, dst_config=None, before_dst=None,
                 src_fault=None, dst_fault=None, builtin_compress=False):
        self.admin = admin
        src_config = dict(src_config or {})
        if not builtin_compress:
            src_config.setdefault("migrate_compress", "0")
        self.src = ct_nodes.new(host="127.0.0.11", config=src_config)
        self.dst = ct_nodes.new(host="127.0.0.12", config=dst_config)
        if src_fault:
            arm_fault(self.src, src_fault)
        if dst_fault:
            arm_fault(self.dst, dst_fault)
        self.src.start()
        if before_dst:
            before_dst(self.dst)
        self.dst.start()


def mig_packet(dst, eid, admin, *, options="<force/><nostart/><type>0</type>", port=None,
               login=None, password=None, id=None, extra=""):
    """The seed's migrate_v2v as written (options force/nostart/type 0, eid, dst with protocol
    SSL, login name/realm, password, port) with the address, port and credentials of the
    test's destination node (the seed's 192.168.0.240 is not ours to reach)."""
    host, dport = dst.node.tls_addr
    name = login[0] if login else H.b64(admin.admin)
    realm = login[1] if login else H.REALM_SYSTEM
    pw = H.b64(admin.admin_pw if password is None else password)
    opts = "<options>%s</options>" % options if options is not None else ""
    body = ("<migrate_v2v>%s<eid>%s</eid><dst><protocol>SSL</protocol>"
            "<address>%s</address><login><name>%s</name><realm>%s</realm></login>"
            "<password>%s</password><port>%d</port></dst>%s</migrate_v2v>"
            % (opts, eid, host, name, realm, pw, port if port is not None else dport, extra))
    return H.packet("<relocator>%s</relocator>" % body, target="relocator",
                    attrs={"progress": "on"}, id=id or H.new_id("mig"))


def seed_literal(dst, eid, admin):
    """The Input packet of the seed's migrate_v2v example, character for character, with only
    the eid, the destination's address and port and the credentials replaced (the seed's
    192.168.0.240 and root/mypass are not ours to use). It has no id attribute."""
    import glob
    for path in sorted(glob.glob(os.path.join(H.seed_dir(), "*.txt"))):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        m = re.search(r"<packet\b.*?</packet>", text, re.S) if "migrate_v2v" in text else None
        if m:
            break
    else:
        pytest.skip("no migrate_v2v example in %s" % H.seed_dir())
    pkt = m.group(0)
    for pat, rep in ((r"<eid>[^<]*</eid>", "<eid>%s</eid>" % eid),
                     (r"<address>[^<]*</address>", "<address>%s</address>" % dst.node.tls_addr[0]),
                     (r"<port>[^<]*</port>", "<port>%d</port>" % dst.node.tls_addr[1]),
                     (r"<name>[^<]*</name>", "<name>%s</name>" % H.b64(admin.admin)),
                     (r"<password>[^<]*</password>",
                      "<password>%s</password>" % H.b64(admin.admin_pw))):
        pkt, n = re.subn(pat, rep, pkt, count=1)
        assert n == 1, "the seed packet has no %s" % pat
    return pkt


def pkt_id(pkt):
    m = re.search(r'<packet\b[^>]*\bid="([^"]*)"', pkt)
    return m.group(1) if m else None


class Migration:
    """One migrate_v2v in flight on a client connection: progress packets with their arrival
    times, then the final reply."""

    def __init__(self, c, pkt):
        self.c, self.pkt, self.id = c, pkt, pkt_id(pkt)
        self.progress = []  # (monotonic time, Reply)
        self.reply = None
        self.t0 = time.monotonic()
        c.send(pkt)

    def next(self, timeout=MIG_TIMEOUT):
        """The next packet of this migration (progress or final)."""
        r = self.c.recv(timeout=timeout)
        if r.is_progress:
            self.progress.append((time.monotonic(), r))
        elif r.id == self.id:  # a request without id: its reply has none either
            self.reply = r
        return r

    def wait_progress(self, pred, timeout=MIG_TIMEOUT):
        deadline = time.monotonic() + timeout
        while self.reply is None:
            r = self.next(max(0.1, deadline - time.monotonic()))
            if r.is_progress and pred(r):
                return r
        raise AssertionError("the migration ended before the awaited progress packet:\n%s"
                             % self.reply.text)

    def finish(self, timeout=MIG_TIMEOUT):
        deadline = time.monotonic() + timeout
        while self.reply is None:
            self.next(max(0.1, deadline - time.monotonic()))
        return self.reply


def migrate(c, pkt, timeout=MIG_TIMEOUT):
    m = Migration(c, pkt)
    m.finish(timeout)
    return m


def progress_params(r):
    """{name: decoded value} of a progress packet's message parameters, plus 'status',
    'percent', 'op', 'eids', 'template'."""
    out = {"eids": []}
    ps = r.iter("progress")
    assert ps, "not a progress packet:\n" + r.text
    p = ps[0]
    for e in p.iter():
        t = H.local(e.tag)
        if t in ("status", "percent", "op"):
            out[t] = (e.text or "").strip()
        elif t == "eid":
            out["eids"].append((e.text or "").strip())
    msg = r.child("message", p)
    if msg is not None:
        m = r.child("message", msg)
        out["template"] = H.unb64(m.text) if m is not None and m.text else ""
        for par in r.children("parameter", msg):
            n = r.child("name", par)
            v = r.child("message", par)
            if n is not None and v is not None:
                try:
                    out[(n.text or "").strip()] = H.unb64(v.text or "")
                except Exception:
                    out[(n.text or "").strip()] = v.text
    return out


# ---------------------------------------------------------------------------------------------
# Looking at a node

def db_rows(ct, eid):
    return ct.db_count("where eid = '%s'" % eid.lower())


def journal_states(ct):
    rc, out = F.run(["sqlite3", os.path.join(ct.state_dir, "ctagent.db"),
                     "select role, state from migrations"])
    return [tuple(l.split("|")) for l in out.strip().splitlines() if "|" in l]


def staging_left(ct, extra_dirs=()):
    """.cta-staging-* / .staging-* / .cta-mig.* leftovers under the node's private root."""
    out = []
    for d in (ct.private_root,) + tuple(extra_dirs):
        if os.path.isdir(d):
            out += [os.path.join(d, n) for n in os.listdir(d)
                    if n.startswith((".cta-staging", ".staging-", ".cta-mig", ".cta-fscheck"))]
    return out


def tree_bytes(paths):
    """Bytes allocated under the given directories (du), 0 if there are none."""
    total = 0
    for top in paths:
        for d, _, files in os.walk(top):
            for n in files:
                try:
                    total += os.lstat(os.path.join(d, n)).st_blocks * 512
                except OSError:
                    pass
    return total


def info(c, eid):
    """(state, transition) from get_info, or None when the node does not know eid."""
    r = c.call(F.envm_packet("<get_info><eid>%s</eid></get_info>" % eid), timeout=F.CT_TIMEOUT)
    assert r.error is None, "get_info: %r\n%s" % (r.error, r.text)
    for e in F.env_dicts(r):
        if e.get("eid", "").lower() == eid.lower():
            return (e.get("state"), e.get("transition", 0))
    return None


def node_view(ct, eid, veid):
    """What one node has of a container: get_info, registry row, private area, LXC config."""
    with ct.client() as c:
        st = info(c, eid)
    priv = os.path.join(ct.private_root, str(veid))
    return {
        "info": st,
        "rows": db_rows(ct, eid),
        "private": os.path.isfile(os.path.join(priv, "bin", "busybox")),
        "lxc_config": os.path.isfile(os.path.join(ct.lxcpath, ct.lxc_name(veid), "config")),
        "lxc_state": ct.lxc_state(veid),
        "staging": staging_left(ct),
    }


def assert_owner(owner, other, eid, veid, running, what, other_uses_veid=False):
    """The container is whole on `owner` (get_info, registry, private area, LXC config; running
    or down as asked) and nowhere on `other` (no row, no private area, no LXC config, no
    staging; other_uses_veid: another container of `other` has that veid, so only the eid is
    checked there). Returns the owner's view."""
    o = node_view(owner, eid, veid)
    x = node_view(other, eid, veid)
    want = (F.ST_RUNNING, 0) if running else (F.ST_DOWN, 0)
    msg = "%s: owner %s: %r; other %s: %r\n%s\n%s" % (
        what, owner.node.name, o, other.node.name, x, owner.log_excerpt(40),
        other.log_excerpt(40))
    assert o["info"] == want, msg
    assert o["rows"] == 1 and o["private"] and o["lxc_config"], msg
    assert o["lxc_state"] == ("RUNNING" if running else "STOPPED"), msg
    assert o["staging"] == [], msg
    assert x["info"] is None and x["rows"] == 0, msg
    if not other_uses_veid:
        assert not x["private"] and not x["lxc_config"], msg
    assert x["staging"] == [], msg
    return o


# ---------------------------------------------------------------------------------------------
# A full manifest of a tree

SPARSE_NAME = b"sparse.img"



def _rel(root, path):
    r = os.path.relpath(path, root)
    return b"" if r == b"." else r


def content_hash(path, bs=1 << 16):
    """A hash of a file's logical content that does not depend on where its holes are: the
    non-zero 64 KiB blocks (at absolute offsets) found through SEEK_DATA/SEEK_HOLE, hashed with
    their offsets, and the size. Fast on a 1 GiB sparse file."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        h.update(b"size %d;" % size)
        pos, last = 0, -1
        while pos < size:
            try:
                ds = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break  # ENXIO: only a hole up to the end
            he = os.lseek(fd, ds, os.SEEK_HOLE)
            b = ds - ds % bs
            while b < he:
                if b > last:
                    chunk = os.pread(fd, bs, b)
                    if chunk.strip(b"\0"):
                        h.update(b"%d:" % b)
                        h.update(chunk)
                    last = b
                b += bs
            pos = he
    finally:
        os.close(fd)
    return h.hexdigest()


def manifest(root, skip_atime=True):
    """{relative path (bytes): dict of everything that must survive a migration}, plus the
    hard-link groups under key None."""
    root = os.fsencode(root)
    out = {}
    inodes = {}
    for d, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in [None] + sorted(dirs) + sorted(files):
            p = d if name is None else os.path.join(d, name)
            if name is None and d != root:
                continue  # directories are listed by their parent
            st = os.lstat(p)
            rel = _rel(root, p)
            e = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid,
                 "mtime_ns": st.st_mtime_ns, "nlink": st.st_nlink if not
                 stat.S_ISDIR(st.st_mode) else None}
            xa = {}
            try:
                names = os.listxattr(p, follow_symlinks=False)
            except OSError:
                names = []
            for n in sorted(names):
                try:
                    xa[n] = os.getxattr(p, n, follow_symlinks=False)
                except OSError as ex:
                    xa[n] = "error %d" % ex.errno
            e["xattrs"] = xa
            if stat.S_ISREG(st.st_mode):
                e["size"] = st.st_size
                e["sha256"] = content_hash(p)
                e["blocks"] = st.st_blocks
                if st.st_nlink > 1:
                    inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                e["target"] = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                e["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            out[rel] = e
    out[None] = sorted(sorted(g) for g in inodes.values())
    return out


def manifest_diff(a, b, ignore=(), blocks=True, allow=()):
    """Differences between two manifests as readable lines (empty = identical). Allocated
    blocks may differ by 1/8 + 256 blocks (file systems allocate differently). allow: (path,
    field) pairs that may differ."""
    lines = []
    for k in sorted(set(a) | set(b), key=lambda x: (x is None, x or b"")):
        if k is not None and any(k == i or k.startswith(i + b"/") for i in ignore):
            continue
        if k not in a or k not in b:
            lines.append("%r only in %s" % (k, "first" if k in a else "second"))
            continue
        if k is None:
            ga = [g for g in a[k] if not any(x.startswith(i) for x in g for i in ignore)]
            gb = [g for g in b[k] if not any(x.startswith(i) for x in g for i in ignore)]
            if ga != gb:
                lines.append("hard-link groups differ: %r vs %r" % (ga, gb))
            continue
        ea, eb = dict(a[k]), dict(b[k])
        ba, bb = ea.pop("blocks", None), eb.pop("blocks", None)
        for f in sorted(set(ea) | set(eb)):
            if ea.get(f) != eb.get(f) and (k, f) not in allow:
                lines.append("%r: %s %r != %r" % (k, f, ea.get(f), eb.get(f)))
        if blocks and ba is not None and bb is not None and bb > ba + ba // 8 + 256:
            lines.append("%r: allocated blocks %d → %d (sparseness lost?)" % (k, ba, bb))
    return lines


def getfacl(path):
    """getfacl's text of a tree (numeric, relative, no headers); ACLs are compared apart from
    the raw xattrs as an independent check."""
    p = subprocess.run(["getfacl", "-R", "-n", "-p", "-P", "."], cwd=path,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return p.stdout.decode("utf-8", "surrogateescape")


def build_rich_tree(base):
    """As root: odd owners, setuid/setgid/sticky bits, device nodes, a fifo, a socket, a 1 GiB
    sparse file with 4 MiB of data, hard links across directories, symlinks (dangling,
    absolute, to a directory), user xattrs, a file capability, access and default ACLs,
    awkward names, and ns mtimes set last (directories too)."""
    os.makedirs(base)
    j = lambda *p: os.path.join(base, *p)  # noqa: E731
    for d in ("a", "b", "b/deep/er/still", "sticky", "sgid", "acl", "names", "empty"):
        os.makedirs(j(d), exist_ok=True)
    with open(j("a", "plain.txt"), "wb") as f:
        f.write(b"hello\n" * 1000)
    with open(j("a", "linked"), "wb") as f:
        f.write(os.urandom(70000))
    os.link(j("a", "linked"), j("b", "deep", "er", "link2"))
    os.link(j("a", "linked"), j("b", "link3"))
    with open(j("a", "empty"), "wb"):
        pass
    with open(j("a", "suid"), "wb") as f:
        f.write(b"#!/bin/sh\n")
    os.chown(j("a", "suid"), 0, 4000000000)
    os.chmod(j("a", "suid"), 0o4755)
    with open(j("a", "sgid-file"), "wb") as f:
        f.write(b"x")
    os.chown(j("a", "sgid-file"), 123456, 654321)
    os.chmod(j("a", "sgid-file"), 0o2710)
    os.chown(j("sticky"), 65534, 65534)
    os.chmod(j("sticky"), 0o1777)
    os.chown(j("sgid"), 1001, 2002)
    os.chmod(j("sgid"), 0o2775)
    with open(j("a", "odd-owner"), "wb") as f:
        f.write(b"owned by nobody we know\n")
    os.chown(j("a", "odd-owner"), 4294967294 - 1, 99999)
    os.chmod(j("a", "odd-owner"), 0o000)
    # device nodes, fifo, socket
    os.mknod(j("b", "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(j("b", "blk"), 0o640 | stat.S_IFBLK, os.makedev(7, 200))
    os.mknod(j("b", "bigdev"), 0o600 | stat.S_IFCHR, os.makedev(300, 70000))
    os.mkfifo(j("b", "fifo"), 0o620)
    s = socket.socket(socket.AF_UNIX)
    s.bind(j("b", "sock"))
    s.close()
    # sparse: 1 GiB logical, 4 MiB of data in three places, holes in between
    with open(j(SPARSE_NAME.decode()), "wb") as f:
        f.truncate(1 << 30)
        f.seek(0)
        f.write(os.urandom(1 << 20))
        f.seek(500 << 20)
        f.write(os.urandom(2 << 20))
        f.seek((1 << 30) - (1 << 20))
        f.write(os.urandom(1 << 20))
    # symlinks
    os.symlink("../a/plain.txt", j("b", "rel-link"))
    os.symlink("/etc/passwd", j("b", "abs-link"))
    os.symlink("no/such/target", j("b", "dangling"))
    os.symlink("a", j("dirlink"))
    os.lchown(j("b", "rel-link"), 4242, 4343)
    # xattrs, capability, ACLs
    os.setxattr(j("a", "plain.txt"), "user.note", b"migrated with care")
    os.setxattr(j("a", "plain.txt"), "user.binary", bytes(range(256)) * 4)
    os.setxattr(j("a", "linked"), "user.on-a-hardlink", b"1")
    os.setxattr(j("b"), "user.dir-attr", b"directory xattr")
    os.setxattr(j("a", "empty"), "user.empty-value", b"")
    F.run(["setcap", "cap_net_raw,cap_net_bind_service+ep", j("a", "suid")], check=True)
    # setcap cleared the setuid bit? put it back (capabilities survive chmod)
    os.chmod(j("a", "suid"), 0o4755)
    F.run(["setfacl", "-m", "u:1234:rwx,g:5678:r--,m::rwx", j("acl")], check=True)
    F.run(["setfacl", "-d", "-m", "u:1234:r-x,g::r-x,o::---", j("acl")], check=True)
    with open(j("acl", "file"), "wb") as f:
        f.write(b"acl'd\n")
    F.run(["setfacl", "-m", "u:4321:rw-", j("acl", "file")], check=True)
    # names
    for n in ("with space", "new\nline", "ünïcødé", "-dash", ".hidden", "x" * 255):
        with open(j("names", n), "wb") as f:
            f.write(n.encode())
    with open(os.path.join(os.fsencode(j("names")), b"bad-utf8-\xff\xfe"), "wb") as f:
        f.write(b"latin junk")
    # ns mtimes, deepest first so that directory times stick
    t = 1234567890 * 10**9 + 123456789
    for d, dirs, files in os.walk(os.fsencode(base), topdown=False):
        for n in files + dirs:
            p = os.path.join(d, n)
            t += 1000000007
            if os.path.islink(p):
                os.utime(p, ns=(t, t), follow_symlinks=False)
            elif not os.path.isdir(p):
                os.utime(p, ns=(t, t))
        for n in dirs:
            p = os.path.join(d, n)
            if not os.path.islink(p):
                t += 999
                os.utime(p, ns=(t, t))
    os.utime(base, ns=(t + 5, t + 7))


def fill(path, mbytes):
    """A file of mbytes MiB of incompressible-ish, non-zero data (no holes)."""
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(mbytes):
            f.write(block[i % 4096:] + block[:i % 4096])


# ---------------------------------------------------------------------------------------------
# A slow node: its daemon gets a share of one CPU (cgroup cpu controller, v1 or v2), so that
# a copy lasts a few seconds on any machine (progress rate, cancel mid-copy, overlap).

class SlowCpu:
    def __init__(self, ct, percent):
        self.ct, self.percent = ct, percent
        self.path = None
        self.root_procs = None

    def __enter__(self):
        name = "cta-mig-slow-%d-%d" % (os.getpid(), self.ct.node.proc.pid)
        period = 100000
        quota = period * self.percent // 100
        if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            # v2: the cpu controller must be enabled for the children of the root
            with open("/sys/fs/cgroup/cgroup.subtree_control", "w") as f:
                f.write("+cpu")
            self.path = os.path.join("/sys/fs/cgroup", name)
            self.root_procs = "/sys/fs/cgroup/cgroup.procs"
            os.makedirs(self.path, exist_ok=True)
            with open(os.path.join(self.path, "cpu.max"), "w") as f:
                f.write("%d %d" % (quota, period))
        else:
            base = "/sys/fs/cgroup/cpu"
            assert os.path.isdir(base), "no cpu cgroup controller"
            self.path = os.path.join(base, name)
            self.root_procs = os.path.join(base, "cgroup.procs")
            os.makedirs(self.path, exist_ok=True)
            with open(os.path.join(self.path, "cpu.cfs_period_us"), "w") as f:
                f.write(str(period))
            with open(os.path.join(self.path, "cpu.cfs_quota_us"), "w") as f:
                f.write(str(quota))
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write(str(self.ct.node.proc.pid))
        return self

    def __exit__(self, *a):
        if self.ct.node.alive():
            try:
                with open(self.root_procs, "w") as f:
                    f.write(str(self.ct.node.proc.pid))
            except OSError:
                pass
        for _ in range(50):
            try:
                os.rmdir(self.path)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)
