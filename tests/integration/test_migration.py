"""relocator/migrate_v2v between two real agents over TLS on loopback, with real LXC
containers: the seed's request, fidelity of the private area, progress packets, options,
and the failure matrix (nothing lost, exactly one owner, a retry that succeeds).

Needs root (skipped otherwise). Fixtures: ctfixtures.py on top of conftest.py.
"""

import os
import subprocess
import time

import pytest

import ctahelpers as H
import ctfixtures as F
from ctfixtures import ct_admin, ct_nodes, ct_template_dir  # noqa: F401 (fixtures)
from test_containers import create, get_info, lifecycle, ok, status

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: runs real LXC containers"),
]

MIG_TIMEOUT = 120.0


def seed_request(dst, eid, admin, *, options="<force/><nostart/><type>0</type>",
                 login=None, password=None, id=None):
    """The seed's migrate_v2v, as written, with the address, port and credentials of the
    test's destination node (the seed's 192.168.0.240 is not ours to reach)."""
    host, port = dst.node.tls_addr
    name = login[0] if login else H.b64(admin.admin)
    realm = login[1] if login else H.REALM_SYSTEM
    pw = "<password>%s</password>" % H.b64(admin.admin_pw if password is None else password)
    if password == "":
        pw = ""
    body = ("<migrate_v2v><options>%s</options><eid>%s</eid><dst><protocol>SSL</protocol>"
            "<address>%s</address><login><name>%s</name><realm>%s</realm></login>%s"
            "<port>%d</port></dst></migrate_v2v>" % (options, eid, host, name, realm, pw, port))
    return H.packet("<relocator>%s</relocator>" % body, target="relocator",
                    attrs={"progress": "on"}, id=id or H.new_id("mig"))


def migrate(c, pkt, timeout=MIG_TIMEOUT):
    """Send migrate_v2v; return (final reply, progress packets)."""
    c.send(pkt)
    progress = []
    deadline = time.time() + timeout
    while True:
        r = c.recv(timeout=max(1.0, deadline - time.time()))
        if r.is_progress:
            progress.append(r)
            continue
        return r, progress


def tree_same(a, b):
    """Byte-for-byte metadata + content comparison with rsync's dry-run itemizer is not
    available everywhere; compare with the engine's own independent walk instead."""
    out = subprocess.run(["diff", "-r", "--no-dereference", a, b], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    return out.returncode == 0, out.stdout.decode("utf-8", "replace")[:2000]


def test_seed_request_migrates_running_container(ct_nodes, ct_admin):
    src = ct_nodes.start(host="127.0.0.11")
    dst = ct_nodes.start(host="127.0.0.12")
    with src.client() as ca:
        _, env = create(ca, name="web01", hostname="web01.example.test", veid=101,
                        ip=src.ip(2))
        eid = env["eid"]
        lifecycle(ca, "start", eid)
        priv = os.path.join(src.private_root, "101")
        with open(os.path.join(priv, "root", "data.txt"), "w") as f:
            f.write("customer data\n")
        r, progress = migrate(ca, seed_request(dst, eid, ct_admin,
                                                options="<type>0</type>"))
        assert r.error is None, "migration failed: %r\n%s\n--- src log ---\n%s\n--- dst log " \
            "---\n%s" % (r.error, r.text, src.log_excerpt(), dst.log_excerpt())
        assert progress, "no progress packets"
        # Gone from the source, private area renamed.
        assert status(ca, eid) is None
        assert not os.path.exists(priv)
        assert os.path.isdir(priv + ".migrated")
    with dst.client() as cb:
        assert status(cb, eid) == (F.ST_RUNNING, 0)
        dpriv = os.path.join(dst.private_root, "101")
        with open(os.path.join(dpriv, "root", "data.txt")) as f:
            assert f.read() == "customer data\n"
