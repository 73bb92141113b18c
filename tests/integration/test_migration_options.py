"""migrate_v2v request forms and options beyond the seed: the vzarelocator operator, an
eid_list of several containers, an unsupported type, and a pinned destination certificate
that does not match. Needs root (skipped otherwise)."""

import os

import pytest

import ctahelpers as H
import ctfixtures as F
from ctfixtures import ct_nodes, ct_template_dir  # noqa: F401 (fixtures)
from migfixtures import ct_admin  # noqa: F401 (fixtures)
from migfixtures import migrate as _migrate
from test_containers import create, lifecycle, status

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: runs real LXC containers"),
]


def packet(dst, admin, eids_xml, *, op="relocator", options="<type>0</type>"):
    host, port = dst.node.tls_addr
    body = ("<migrate_v2v><options>%s</options>%s<dst><address>%s</address><port>%d</port>"
            "<login><name>%s</name><realm>%s</realm></login><password>%s</password></dst>"
            "</migrate_v2v>" % (options, eids_xml, host, port, H.b64(admin.admin),
                                H.REALM_SYSTEM, H.b64(admin.admin_pw)))
    return H.packet("<%s>%s</%s>" % (op, body, op), target=op, attrs={"progress": "on"},
                    id=H.new_id("mig"))


def run(c, pkt):
    return _migrate(c, pkt).reply


def test_vzarelocator_and_eid_list(ct_nodes, ct_admin):
    a = ct_nodes.start(host="127.0.0.11")
    b = ct_nodes.start(host="127.0.0.12")
    with a.client() as ca:
        eids = [create(ca, name="l%d" % i, veid=130 + i)[1]["eid"] for i in range(2)]
        lifecycle(ca, "start", eids[1])
        lst = "<eid_list>%s</eid_list>" % "".join("<eid>%s</eid>" % e for e in eids)
        r = run(ca, packet(b, ct_admin, lst, op="vzarelocator"))
        assert r.error is None, r.text
        assert r.origin == "vzarelocator", r.text
        for e in eids:
            assert status(ca, e) is None, "still on the source: %s" % e
    with b.client() as cb:
        assert status(cb, eids[0]) == (F.ST_DOWN, 0)
        assert status(cb, eids[1]) == (F.ST_RUNNING, 0)


def test_unsupported_type_and_unknown_eid_move_nothing(ct_nodes, ct_admin):
    a = ct_nodes.start(host="127.0.0.11")
    b = ct_nodes.start(host="127.0.0.12")
    with a.client() as ca:
        eid = create(ca, name="t1", veid=140)[1]["eid"]
        r = run(ca, packet(b, ct_admin, "<eid>%s</eid>" % eid, options="<type>1</type>"))
        assert r.code == 500 and "unsupported migration type" in r.error[1], r.text
        # A list with an unknown eid is refused before anything moves.
        r = run(ca, packet(b, ct_admin, "<eid>%s</eid><eid>%s</eid>" % (
            eid, "00000000-1111-4222-8333-444444444444")))
        assert r.code == 400, r.text
        assert status(ca, eid) == (F.ST_DOWN, 0)
    with b.client() as cb:
        assert status(cb, eid) is None


def test_pinned_destination_certificate_must_match(ct_nodes, ct_admin):
    a = ct_nodes.start(host="127.0.0.11")
    b = ct_nodes.start(host="127.0.0.12")
    host, port = b.node.tls_addr
    wrong = "SHA256:" + ":".join(["AB"] * 32)
    with open(os.path.join(a.state_dir, "known_nodes"), "w") as f:
        f.write("%s:%d %s\n" % (host, port, wrong))
    with a.client() as ca:
        eid = create(ca, name="p1", veid=150)[1]["eid"]
        lifecycle(ca, "start", eid)
        r = run(ca, packet(b, ct_admin, "<eid>%s</eid>" % eid))
        assert r.code == 210, r.text
        assert status(ca, eid) == (F.ST_RUNNING, 0)
        # With the right pin it goes through.
        with H.Client(b.node.tls_addr) as probe:
            right = probe.fingerprint
        with open(os.path.join(a.state_dir, "known_nodes"), "w") as f:
            f.write("%s:%d %s\n" % (host, port, right))
        r = run(ca, packet(b, ct_admin, "<eid>%s</eid>" % eid))
        assert r.error is None, r.text
    with b.client() as cb:
        assert status(cb, eid) == (F.ST_RUNNING, 0)
