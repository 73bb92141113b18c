"""Downtime of a live migration (run by bench/downtime, not by make check).

A running busybox container whose program keeps rewriting four 1 MiB blocks of one large
file (a database's pattern) is migrated between two agents over TLS: the first pass copies
it while it runs, the second (container stopped) sends what changed. Prints, per run, the
phases the source logs and what the second pass sent; the container is down for
stop (and, from builds before the summary was fetched ahead, the have), the second stream
and the commit (and its start on the destination).
Environment: CTA_DT_MB (the file's size, MiB, default 1024), CTA_DT_RUNS (default 3),
CTA_DT_FILES (small files of 0-8 KiB beside it, in directories of 500; default 0).
"""

import os
import re
import time

import migfixtures as M
from ctfixtures import ct_nodes, ct_template_dir  # noqa: F401 (fixtures)
from migfixtures import ct_admin  # noqa: F401 (fixture)
from test_migration import DB_WRITER, expect_ok, new_ct, start_with_writer

PHASES = ("precopy", "stop", "stream", "commit")


def small_files(root, n):
    blob = os.urandom(8192)
    for i in range(n):
        d = os.path.join(root, "srv", "d%03d" % (i // 500))
        if i % 500 == 0:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "f%05d" % i), "wb") as f:
            f.write(blob[:(i * 2654435761) % 8193])


def one_run(p, ca, veid, mb, files):
    eid = new_ct(p, ca, veid, running=False, data_mb=mb)
    priv = os.path.join(p.src.private_root, str(veid))
    small_files(priv, files)
    start_with_writer(ca, eid, priv, DB_WRITER, "db-started")
    time.sleep(1)  # past the 1 s ctime margin of the files just created
    t0 = time.monotonic()
    m = M.migrate(ca, M.mig_packet(p.dst, eid, p.admin, options="<type>0</type>"))
    whole = time.monotonic() - t0
    expect_ok(m, p)
    log = p.src.node.log()
    line = [ln for ln in log.splitlines() if "moved to" in ln][-1]
    # "stop" (the summary was fetched before it) or, from older builds, "stop+have"
    ph = {k: float(re.search(re.escape(k) + r"(?:\+have)? ([\d.]+) s", line).group(1))
          for k in PHASES}
    sent = [int(b) for b in re.findall(r"sent \d+ entries, (\d+) data bytes", log)][-1]
    patched = re.findall(r"(\d+) files patched in place", p.dst.node.log())
    return whole, ph, sent, patched[-1] if patched else "?"


def test_downtime(ct_nodes, ct_admin):  # noqa: F811
    mb = int(os.environ.get("CTA_DT_MB", "1024"))
    runs = int(os.environ.get("CTA_DT_RUNS", "3"))
    files = int(os.environ.get("CTA_DT_FILES", "0"))
    p = M.Pair(ct_nodes, ct_admin)
    rows = []
    with p.src.client() as ca:
        for i in range(runs):
            rows.append(one_run(p, ca, 140 + i, mb, files))
    print("\n%d MiB file, four blocks rewritten without pause while it runs, %d small files "
          "(%s)" % (mb, files, os.environ.get("CTAGENTD", "build")))
    print("%6s %9s %10s %7s %7s %8s %12s %8s" % ("run", "whole s", "precopy s", "stop s",
                                                  "2nd s", "commit", "2nd sent MB", "patched"))
    for i, (whole, ph, sent, patched) in enumerate(rows):
        down = ph["stop"] + ph["stream"] + ph["commit"]
        print("%6d %9.2f %10.2f %7.2f %7.2f %8.2f %12.1f %8s   down %.2f s + start"
              % (i + 1, whole, ph["precopy"], ph["stop"], ph["stream"], ph["commit"],
                 sent / 1e6, patched, down))
