"""migrate_v2v request forms and options beyond the seed: the vzarelocator operator, an
eid_list of several containers, an unsupported type, a pinned destination certificate
that does not match, and our compress option. Needs root (skipped otherwise)."""

import os
import re

import pytest

import ctahelpers as H
import ctfixtures as F
import migfixtures as M
from ctfixtures import ct_nodes, ct_template_dir  # noqa: F401 (fixtures)
from migfixtures import ct_admin  # noqa: F401 (fixtures)
from migfixtures import migrate as _migrate
from test_containers import create, lifecycle, status

MIB = 1 << 20

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


def test_compressed_stream_of_a_running_container(ct_nodes, ct_admin):
    """options/compress (ours): both passes of a running container travel as zstd, far
    fewer bytes on the wire for compressible data, and so does the summary the destination
    sends for the second pass; the copy is exact; a bad value is refused before anything
    moves."""
    p = M.Pair(ct_nodes, ct_admin)
    with p.src.client() as ca:
        eid = create(ca, name="z1", veid=160)[1]["eid"]
        priv = os.path.join(p.src.private_root, "160")
        M.build_rich_tree(os.path.join(priv, "rich"))
        with open(os.path.join(priv, "text.log"), "w") as f:  # 24 MiB of log lines
            for i in range(24 * 1024 * 1024 // 64):
                f.write("%08d GET /index.html HTTP/1.1 200 user=%05d agent=x\n" % (i, i % 977))
        M.fill(os.path.join(priv, "random.bin"), 2)
        lifecycle(ca, "start", eid)
        r = run(ca, packet(p.dst, ct_admin, "<eid>%s</eid>" % eid,
                           options="<type>0</type><compress>banana</compress>"))
        assert r.code == 204 and "options/compress" in r.error[1], r.text
        assert status(ca, eid) == (F.ST_RUNNING, 0)
        m = M.migrate(ca, M.mig_packet(p.dst, eid, p.admin,
                                       options="<nostart/><type>0</type><compress>1</compress>"))
        assert m.reply.error is None, m.reply.text + p.src.log_excerpt() + p.dst.log_excerpt()
    M.assert_owner(p.dst, p.src, eid, 160, running=False, what="after a compressed copy")
    slog, dlog = p.src.node.log(), p.dst.node.log()
    sent = [(int(a), int(b)) for a, b in
            re.findall(r"zstd level 1: (\d+) stream bytes sent as (\d+)", slog)]
    got = [(int(a), int(b)) for a, b in
           re.findall(r"zstd: (\d+) stream bytes arrived as (\d+)", dlog)]
    assert len(sent) == 2 and got == sent, (sent, got, p.src.log_excerpt())
    assert sent[0][0] > 26 * MIB and sent[0][1] < sent[0][0] // 3, sent
    # the summary for the second pass came compressed too (the source asked), and read right
    summ = [(int(a), int(b)) for a, b in
            re.findall(r"zstd: summary of (\d+) bytes sent as (\d+)", dlog)]
    assert len(summ) == 1 and 0 < summ[0][1] < summ[0][0] // 2, (summ, p.dst.log_excerpt())
    frozen = os.path.join(p.src.private_root, "160.migrated")
    diff = M.manifest_diff(M.manifest(frozen), M.manifest(os.path.join(p.dst.private_root,
                                                                        "160")))
    assert diff == [], "\n".join(diff[:40])


def test_node_default_compression_and_request_turning_it_off(ct_nodes, ct_admin):
    """migrate_compress in the source's config compresses requests that do not say;
    <compress>0</compress> turns it off for one request."""
    p = M.Pair(ct_nodes, ct_admin, src_config={"migrate_compress": "3"})
    with p.src.client() as ca:
        e1 = create(ca, name="z2", veid=161)[1]["eid"]
        e2 = create(ca, name="z3", veid=162)[1]["eid"]
        m = M.migrate(ca, M.mig_packet(p.dst, e1, p.admin))
        assert m.reply.error is None, m.reply.text
        assert len(re.findall(r"zstd level 3: \d+ stream bytes", p.src.node.log())) == 1
        m = M.migrate(ca, M.mig_packet(p.dst, e2, p.admin,
                                       options="<type>0</type><compress>off</compress>"))
        assert m.reply.error is None, m.reply.text
        assert len(re.findall(r"zstd level \d+: \d+ stream bytes", p.src.node.log())) == 1
    for e, v in ((e1, 161), (e2, 162)):
        M.assert_owner(p.dst, p.src, e, v, running=False, what="veid %d" % v)


def _text_log(path, mbytes):
    with open(path, "w") as f:
        for i in range(mbytes * MIB // 64):
            f.write("%08d GET /index.html HTTP/1.1 200 user=%05d agent=x\n" % (i, i % 977))


PROBE = re.compile(r"link probe: (\d+) bytes at (\d+) MB/s \(round trip [\d.]+ ms; "
                   r"compressed below (\d+) MB/s\): zstd level (\d+)")


REUSED = re.compile(r"link rate (\d+) MB/s, probed ([\d.]+) s ago \(compressed below (\d+) "
                    r"MB/s\): zstd level (\d+)")


def test_auto_compression_probes_the_link(ct_nodes, ct_admin):
    """<compress>auto</compress> (ours): before a tree of 64 MiB or more the source times
    a probe of the link and compresses only below migrate_compress_auto_mbs (here far
    above any link, so zstd level 3); a node default of 0 and a small tree do not probe;
    the next big tree to the same destination takes the rate measured then instead of
    probing again (migrate_probe_reuse_s), and is compressed the same; the copies are
    exact."""
    p = M.Pair(ct_nodes, ct_admin, src_config={"migrate_compress": "0",
                                               "migrate_compress_auto_mbs": "1000000"})
    with p.src.client() as ca:
        e1 = create(ca, name="za", veid=163)[1]["eid"]
        e2 = create(ca, name="zb", veid=164)[1]["eid"]
        e3 = create(ca, name="zc", veid=165)[1]["eid"]
        e4 = create(ca, name="ze", veid=167)[1]["eid"]
        for v, mb in ((163, 48), (164, 48), (165, 2), (167, 48)):  # 75, 75, 3, 75 MB
            priv = os.path.join(p.src.private_root, str(v))
            _text_log(os.path.join(priv, "text.log"), mb)
            M.fill(os.path.join(priv, "random.bin"), mb * 5 // 8)
        m = M.migrate(ca, M.mig_packet(p.dst, e1, p.admin))  # the node's default: off
        assert m.reply.error is None, m.reply.text
        slog = p.src.node.log()
        assert not PROBE.search(slog) and not re.search(r"zstd level \d+: \d+ stream", slog)
        m = M.migrate(ca, M.mig_packet(p.dst, e2, p.admin,
                                       options="<type>0</type><compress>auto</compress>"))
        assert m.reply.error is None, m.reply.text + p.src.log_excerpt()
        slog, dlog = p.src.node.log(), p.dst.node.log()
        probes = PROBE.findall(slog)
        assert len(probes) == 1, slog[-3000:]
        sent, mbs, below, level = (int(x) for x in probes[0])
        assert below == 1000000 and level == 3 and 0 < sent <= 8 * MIB and mbs > 0, probes
        zs = re.findall(r"zstd level 3: (\d+) stream bytes sent as (\d+)", slog)
        got = re.findall(r"zstd: (\d+) stream bytes arrived as (\d+)", dlog)
        assert len(zs) == 1 and got == zs, (zs, got)
        assert int(zs[0][1]) < int(zs[0][0]) * 3 // 4, zs  # the text log compressed
        m = M.migrate(ca, M.mig_packet(p.dst, e3, p.admin,  # 3 MiB: not worth a probe
                                       options="<type>0</type><compress>auto</compress>"))
        assert m.reply.error is None, m.reply.text
        assert len(PROBE.findall(p.src.node.log())) == 1
        m = M.migrate(ca, M.mig_packet(p.dst, e4, p.admin,  # the same destination, soon after
                                       options="<type>0</type><compress>auto</compress>"))
        assert m.reply.error is None, m.reply.text + p.src.log_excerpt()
        slog, dlog = p.src.node.log(), p.dst.node.log()
        assert len(PROBE.findall(slog)) == 1, slog[-3000:]
        reused = REUSED.findall(slog)
        assert len(reused) == 1 and int(reused[0][0]) == mbs and float(reused[0][1]) < 600, reused
        assert reused[0][2:] == ("1000000", "3"), reused
        zs = re.findall(r"zstd level 3: (\d+) stream bytes sent as (\d+)", slog)
        got = re.findall(r"zstd: (\d+) stream bytes arrived as (\d+)", dlog)
        assert len(zs) == 2 and got == zs, (zs, got)
    for e, v in ((e1, 163), (e2, 164), (e3, 165), (e4, 167)):
        M.assert_owner(p.dst, p.src, e, v, running=False, what="veid %d" % v)
        diff = M.manifest_diff(M.manifest(os.path.join(p.src.private_root, "%d.migrated" % v)),
                               M.manifest(os.path.join(p.dst.private_root, str(v))))
        assert diff == [], "\n".join(diff[:40])


def test_probe_reuse_off_probes_every_time(ct_nodes, ct_admin):
    """migrate_probe_reuse_s = 0: every big tree gets its own probe, even to the destination
    just probed (here faster than the 1 MB/s threshold: sent uncompressed)."""
    p = M.Pair(ct_nodes, ct_admin, src_config={"migrate_compress": "auto",
                                               "migrate_compress_auto_mbs": "1",
                                               "migrate_probe_reuse_s": "0"})
    with p.src.client() as ca:
        for v in (168, 169):
            eid = create(ca, name="zp%d" % v, veid=v)[1]["eid"]
            M.fill(os.path.join(p.src.private_root, str(v), "random.bin"), 70)
            m = M.migrate(ca, M.mig_packet(p.dst, eid, p.admin))
            assert m.reply.error is None, m.reply.text + p.src.log_excerpt()
            M.assert_owner(p.dst, p.src, eid, v, running=False, what="veid %d" % v)
    slog = p.src.node.log()
    probes = PROBE.findall(slog)
    assert len(probes) == 2 and not REUSED.search(slog), slog[-3000:]
    assert all(x[2:] == ("1", "0") for x in probes), probes
    assert not re.search(r"zstd level \d+: \d+ stream bytes", slog)


NO_PROBE = re.compile(r"no link probe: ([\d.]+) MB of data changed since the copy on the "
                      r"destination arrived here: sending uncompressed")


def test_no_probe_back_onto_the_copy_that_arrived(ct_nodes, ct_admin):
    """Migrating back onto the copy the container left there (the last migration that
    brought it here): a probe is not worth it when less than 64 MiB of data changed since
    it arrived; it is when more did. Every probe counts (migrate_probe_reuse_s = 0), the
    link is taken as slow (compressed below 1,000,000 MB/s), and the copies are exact."""
    conf = {"migrate_compress": "auto", "migrate_compress_auto_mbs": "1000000",
            "migrate_probe_reuse_s": "0"}
    p = M.Pair(ct_nodes, ct_admin, src_config=conf, dst_config=conf)
    opts = "<type>0</type>"
    with p.src.client() as ca, p.dst.client() as cb:
        eid = create(ca, name="zq", veid=170)[1]["eid"]
        priv = os.path.join(p.src.private_root, "170")
        _text_log(os.path.join(priv, "text.log"), 40)
        M.fill(os.path.join(priv, "random.bin"), 40)  # 103 MB in all
        m = M.migrate(ca, M.mig_packet(p.dst, eid, p.admin, options=opts))  # A→B: probed
        assert m.reply.error is None, m.reply.text + p.src.log_excerpt()
        assert len(PROBE.findall(p.src.node.log())) == 1
        dpriv = os.path.join(p.dst.private_root, "170")
        with open(os.path.join(dpriv, "small-change"), "wb") as f:  # 1 MiB changed on B
            f.write(os.urandom(1 << 20))
        m = M.migrate(cb, M.mig_packet(p.src, eid, p.admin, options=opts))  # B→A: not
        assert m.reply.error is None, m.reply.text + p.dst.log_excerpt()
        blog = p.dst.node.log()
        assert not PROBE.search(blog), blog[-3000:]
        skipped = NO_PROBE.findall(blog)
        assert len(skipped) == 1 and 1.0 <= float(skipped[0]) < 2.0, skipped
        assert not re.search(r"zstd level \d+: \d+ stream bytes", blog), blog[-3000:]
        # (the summary of the copy on A came compressed all the same: the link may be slow)
        assert re.search(r"zstd: summary of \d+ bytes sent as \d+", p.src.node.log())
        M.assert_owner(p.src, p.dst, eid, 170, running=False, what="back on A")
        diff = M.manifest_diff(M.manifest(os.path.join(p.dst.private_root, "170.migrated")),
                               M.manifest(priv))
        assert diff == [], "\n".join(diff[:40])
        M.fill(os.path.join(priv, "more.bin"), 70)  # 70 MiB changed on A: worth a probe
        m = M.migrate(ca, M.mig_packet(p.dst, eid, p.admin, options=opts))  # A→B: probed
        assert m.reply.error is None, m.reply.text + p.src.log_excerpt()
        alog = p.src.node.log()
        assert len(PROBE.findall(alog)) == 2 and not NO_PROBE.search(alog), alog[-3000:]
        assert len(re.findall(r"zstd level 3: \d+ stream bytes", alog)) == 2, alog[-3000:]
    M.assert_owner(p.dst, p.src, eid, 170, running=False, what="on B again")
    diff = M.manifest_diff(M.manifest(os.path.join(p.src.private_root, "170.migrated")),
                           M.manifest(os.path.join(p.dst.private_root, "170")))
    assert diff == [], "\n".join(diff[:40])


def test_auto_compression_is_the_default(ct_nodes, ct_admin):
    """With the built-in defaults (migrate_compress = auto, below 250 MB/s) a big tree is
    compressed exactly when the probe measured a link slower than 250 MB/s."""
    p = M.Pair(ct_nodes, ct_admin, builtin_compress=True)
    with p.src.client() as ca:
        eid = create(ca, name="zd", veid=166)[1]["eid"]
        priv = os.path.join(p.src.private_root, "166")
        _text_log(os.path.join(priv, "text.log"), 48)  # 75 MB in all
        M.fill(os.path.join(priv, "random.bin"), 30)
        m = M.migrate(ca, M.mig_packet(p.dst, eid, p.admin))
        assert m.reply.error is None, m.reply.text + p.src.log_excerpt()
    slog = p.src.node.log()
    probes = PROBE.findall(slog)
    assert len(probes) == 1, slog[-3000:]
    sent, mbs, below, level = (int(x) for x in probes[0])
    assert below == 250 and level == (0 if mbs >= 250 else 3 if mbs < 250 / 8 else 1), probes
    zs = re.findall(r"zstd level (\d+): \d+ stream bytes sent", slog)
    assert zs == ([] if level == 0 else [str(level)]), (zs, probes)
    M.assert_owner(p.dst, p.src, eid, 166, running=False, what="after the copy")
