"""Crashes and cut links at random moments of a migration, not only at the CTA_FAULT points.

One container goes back and forth between two real agents over TLS. Each round changes a
few of its files, starts a migration from the node that owns it, and after a random delay
(anywhere from before hello to after the commit) does one thing to it: kill -9 the source,
the destination or both, reset the migration's TCP connection, hold the registry lock of
the source or the destination for 1-16 s (its writes fail after 5 s, as on a failing disk;
past 10 s the rollback's writes fail too; in half of those rounds that node is then killed),
start or stop the container by hand on the source with the LXC tools (the agent must act on
what runs: no commit of a copy that runs, a copy started after the commit kept), or nothing
(the control). After a round by hand the container may run or not; the registry must say
which.
The killed agents are restarted on the same state (in a random order when both died), and
then, once both have settled (start-up recovery, the source's asking after a lost commit
reply), the round checks what users need: the container is whole on exactly one node
(registry, private area, LXC config, no staging left on either), running if it ran before,
and its data is byte for byte what it was before the round. The next round migrates it
from wherever it is now, so later rounds also start from kept copies (marks, lineage).

A second test does the same with two containers migrating at once, each from the node
that owns it (the same way or crossing), and the thing done to a node (A or B) rather than
to a role: two migrations then share each agent's journal, in-doubt job and recovery, in
both roles at once.

The number of rounds and the seed come from the environment: CTA_CHAOS_ROUNDS (default 4,
what `make check` runs; the two-container test runs half as many) and CTA_CHAOS_SEED
(default: fixed, so that a failure replays).
A campaign by hand:

    CTA_CHAOS_ROUNDS=100 CTA_CHAOS_SEED=$RANDOM python3 -m pytest -q -c pytest.ini \\
        --rootdir . test_migration_chaos.py

Each round logs one line (seed, round, action, delay, outcome) to the test's output.
"""

import os
import random
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

VEID = 101
ACTIONS = ["kill_src", "kill_dst", "kill_both", "reset_link", "lock_src", "lock_dst", "none",
           "start_by_hand", "stop_by_hand"]
SETTLE_S = 120  # a destination down past the source's asks: its backoff reaches 60 s


def _rounds():
    return int(os.environ.get("CTA_CHAOS_ROUNDS", "4"))


def _seed():
    return int(os.environ.get("CTA_CHAOS_SEED", "20261128"))


def _data_dir(ct, veid=VEID):
    return os.path.join(ct.private_root, str(veid), "chaos")


def _make_data(ct, rng, veid=VEID):
    """24 MiB in one file and 300 small files in 10 directories, one hard link, one
    symlink: enough that the copy takes a while and has several phases to interrupt."""
    d = _data_dir(ct, veid)
    os.makedirs(d)
    M.fill(os.path.join(d, "blob.bin"), 24)
    for i in range(300):
        sub = os.path.join(d, "dir%d" % (i % 10))
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, "f%03d" % i), "wb") as f:
            f.write(rng.randbytes(rng.randrange(0, 8192)))
    os.link(os.path.join(d, "dir0", "f000"), os.path.join(d, "hardlink"))
    os.symlink("dir1/f001", os.path.join(d, "symlink"))


def _change_data(ct, rng, rnd, veid=VEID):
    """A few changes between rounds: rewritten, new and deleted small files, and 1 MiB
    somewhere inside the blob."""
    d = _data_dir(ct, veid)
    for _ in range(rng.randrange(1, 6)):
        sub = os.path.join(d, "dir%d" % rng.randrange(10))
        names = sorted(os.listdir(sub))
        op = rng.choice(["rewrite", "new", "delete"])
        if op == "rewrite" and names:
            with open(os.path.join(sub, rng.choice(names)), "wb") as f:
                f.write(rng.randbytes(rng.randrange(1, 8192)))
        elif op == "delete" and names:
            os.unlink(os.path.join(sub, rng.choice(names)))
        else:
            with open(os.path.join(sub, "n%d_%d" % (rnd, rng.randrange(1 << 30))), "wb") as f:
                f.write(rng.randbytes(rng.randrange(0, 8192)))
    with open(os.path.join(d, "blob.bin"), "r+b") as f:
        f.seek(rng.randrange(0, 23) << 20)
        f.write(rng.randbytes(1 << 20))


def _reset_connections(dst):
    """Reset every TCP connection to the destination's TLS port (`ss -K`: the kernel aborts
    the connecting socket, the source's, and sends the peer a reset). Returns how many."""
    host, port = dst.node.tls_addr
    r = subprocess.run(["ss", "-K", "-t", "dst", host, "dport", "=", ":%d" % port],
                       capture_output=True, text=True, timeout=10)
    return sum(1 for line in r.stdout.splitlines() if ":%d" % port in line)


def _lock_registry(ct, hold, kill):
    """Another writer holds ct's registry lock for `hold` s (past the 5 s busy timeout the
    agent's writes fail, as on a full or failing disk); with kill, ct is killed -9 just
    before the lock is released."""
    lock = M.RegistryLock(ct, hold).start()
    if kill:
        time.sleep(max(0.0, hold - 0.3))
        ct.kill9()
    lock.join()


def _strike(action, rng, nodes, reset):
    """Does action ("kill_<name>", "kill_both", "lock_<name>", "reset_link(s)"; anything
    else is not done here) to nodes, a dict of name: node; reset: the nodes to whose TLS
    port the connections are reset. Returns (the action as logged, the nodes killed)."""
    verb, _, who = action.partition("_")
    killed = []
    if verb == "kill":
        for name, node in nodes.items():
            if who in (name, "both"):
                node.kill9()
                killed.append(node)
    elif verb == "reset":
        action = "%s (%d connections)" % (action, sum(_reset_connections(n) for n in reset))
    elif verb == "lock":
        # (past 10 s a rollback's writes fail too, after the commit's: the in-doubt job
        # must finish it once the lock goes)
        node = nodes[who]
        hold, kill = rng.uniform(1.0, 16.0), rng.random() < 0.5
        action = "%s (%.1f s%s)" % (action, hold, ", then kill -9 it" if kill else "")
        _lock_registry(node, hold, kill)
        if kill:
            killed.append(node)
    return action, killed


def _finish(mig):
    """The migration's final reply, or the exception that took it (the reply is lost with
    its agent or its link)."""
    try:
        return mig.finish(SETTLE_S)
    except Exception as e:  # noqa: BLE001
        return e


def _view_settled(a, b, eid, want_running, veid=VEID):
    """(owner, other) once the container is whole on exactly one node and nothing is left
    in flight on either, else None. Both agents must be up. want_running None (someone
    started or stopped it by hand): either, as long as the registry says what LXC runs."""
    va, vb = M.node_view(a, eid, veid), M.node_view(b, eid, veid)
    for own, oth, vo, vx in ((a, b, va, vb), (b, a, vb, va)):
        if vo["info"] is None or vx["info"] is not None:
            continue
        if vo["info"][1] != 0 or vo["staging"] or vx["staging"]:
            return None
        runs = vo["lxc_state"] == "RUNNING"
        if want_running is not None and runs != want_running:
            return None
        if want_running is None and (vo["info"][0] == F.ST_RUNNING) != runs:
            return None
        return own, oth
    return None


def _by_hand(ct, what):
    """lxc-start or lxc-stop -k of the chaos container on ct, behind its agent's back (it
    may fail: not defined there any more, already in that state)."""
    argv = ["lxc-start"] if what == "start" else ["lxc-stop", "-k"]
    rc, _ = F.run(argv + ["-P", ct.lxcpath, "-n", ct.lxc_name(VEID)], timeout=60)
    return rc == 0


def _set_running(owner, eid, running):
    with owner.client() as c:
        state = M.info(c, eid)[0]
        if running and state != F.ST_RUNNING:
            lifecycle(c, "start", eid)
        elif not running and state == F.ST_RUNNING:
            lifecycle(c, "stop", eid)


def _round(p, rng, rnd, owner, other, eid, log, pace):
    was_running = rng.random() < 0.5
    _set_running(owner, eid, was_running)
    _change_data(owner, rng, rnd)
    before = M.manifest(_data_dir(owner))

    action = rng.choice(ACTIONS)
    # from before hello to a little past the end of a migration that is left alone (pace:
    # how long the last ones took); or, in a third of the rounds, within 150 ms after the
    # source says it commits: the shortest and most delicate window
    at_commit = rng.random() < 0.33
    delay = rng.uniform(0.0, 0.15) if at_commit else rng.uniform(0.0, 1.25 * pace[0])
    opts = rng.choice(["<type>0</type>", "<type>0</type><compress>1</compress>"])
    t0 = time.monotonic()
    c = owner.client()
    mig = M.Migration(c, M.mig_packet(other, eid, p.admin, options=opts))
    reply = None
    if at_commit:
        try:
            mig.wait_progress(lambda r: M.progress_params(r).get("phase", "").startswith(
                "committing"), 60)
        except AssertionError:
            reply = mig.reply  # (it ended without committing: act on what is left)
        t0 = time.monotonic()
    while time.monotonic() - t0 < delay and reply is None:
        try:
            mig.next(max(0.01, delay - (time.monotonic() - t0)))
            reply = mig.reply
        except (socket.timeout, TimeoutError, OSError):
            pass
    done_before = reply is not None
    if done_before and reply.error is None and not at_commit:
        pace[0] = 0.7 * pace[0] + 0.3 * (time.monotonic() - t0)
    action, killed = _strike(action, rng, {"src": owner, "dst": other}, [other])
    by_hand = action in ("start_by_hand", "stop_by_hand")
    if by_hand:
        done = _by_hand(owner, action.split("_")[0])
        action += "" if done else " (refused)"
    if owner not in killed and reply is None:
        reply = _finish(mig)
    c.close()
    rng.shuffle(killed)
    for ct in killed:
        M.restart(ct)
    want = None if by_hand else was_running
    settled = H.wait_for(lambda: _view_settled(owner, other, eid, want), SETTLE_S, 0.3)
    outcome = "timeout"
    if settled:
        new_owner, new_other = settled
        outcome = "moved" if new_owner is other else "stayed"
    what = "seed %d round %d: %s %.2f s after %s (%s, %s, the migration %s)" % (
        _seed(), rnd, action, delay, "the commit began" if at_commit else "the request",
        "running" if was_running else "stopped",
        "zstd" if "compress" in opts else "plain",
        "had ended" if done_before else "was in flight")
    log.append("%s → %s" % (what, outcome))
    assert settled, "%s: not settled in %d s\n%s\n%s" % (
        what, SETTLE_S, owner.log_excerpt(40), other.log_excerpt(40))
    if by_hand:  # (whatever the hand did, as long as the registry agrees with LXC)
        was_running = M.node_view(new_owner, eid, VEID)["lxc_state"] == "RUNNING"
    M.assert_owner(new_owner, new_other, eid, VEID, running=was_running, what=what,
                   other_uses_veid=False)
    diff = M.manifest_diff(before, M.manifest(_data_dir(new_owner)))
    assert diff == [], "%s: the data differs from before the round:\n%s" % (
        what, "\n".join(diff[:40]))
    if isinstance(reply, H.Reply) and reply.error is None:
        assert new_owner is other, "%s: OK reply but the container stayed" % what
    return new_owner, new_other


def test_random_crashes_and_cuts(ct_nodes, ct_admin):
    """Rounds of a migration interrupted at a random moment; after each: exactly one
    owner, the container whole and as it was, its data unchanged (module docstring)."""
    rng = random.Random(_seed())
    p = M.Pair(ct_nodes, ct_admin)
    with p.src.client() as c:
        _, env = create(c, name="chaos", hostname="chaos.example.test", veid=VEID,
                        ip=p.src.ip(VEID % 200 + 2))
        eid = env["eid"]
    _make_data(p.src, rng)
    owner, other = p.src, p.dst
    log = []
    pace = [1.0]
    try:
        for rnd in range(_rounds()):
            owner, other = _round(p, rng, rnd, owner, other, eid, log, pace)
    finally:
        print("\n".join(log))


# ---------------------------------------------------------------------------------------------
# Two containers at once, in both directions

VEIDS_TWO = (101, 102)
NODE_ACTIONS = ["kill_a", "kill_b", "kill_both", "reset_links", "lock_a", "lock_b", "none"]


def _round_two(p, rng, rnd, cts, log, pace):
    """One round with both containers migrating at once, each from the node that owns it
    (so in the same or in opposite directions), and one thing done to a node (A: the first
    node, B: the second) while they run. cts: [eid, veid, owner, other] per container,
    updated in place."""
    plan = []
    for eid, veid, owner, other in cts:
        running = rng.random() < 0.5
        _set_running(owner, eid, running)
        _change_data(owner, rng, rnd, veid)
        plan.append((running, M.manifest(_data_dir(owner, veid))))
    action = rng.choice(NODE_ACTIONS)
    delay = rng.uniform(0.0, 1.25 * pace[0])
    opts = rng.choice(["<type>0</type>", "<type>0</type><compress>1</compress>"])
    t0 = time.monotonic()
    migs = []
    for eid, veid, owner, other in cts:
        c = owner.client()
        migs.append((c, M.Migration(c, M.mig_packet(other, eid, p.admin, options=opts))))
    time.sleep(delay)
    action, killed = _strike(action, rng, {"a": p.src, "b": p.dst}, [p.src, p.dst])
    replies = []
    for (c, mig), (eid, veid, owner, other) in zip(migs, cts):
        replies.append(_finish(mig) if owner not in killed else None)
        c.close()
    if action == "none" and all(isinstance(r, H.Reply) and r.error is None for r in replies):
        pace[0] = 0.7 * pace[0] + 0.3 * (time.monotonic() - t0)
    rng.shuffle(killed)
    for node in killed:
        M.restart(node)
    what = "seed %d round %d (two containers): %s %.2f s after the requests (%s)" % (
        _seed(), rnd, action, delay, "zstd" if "compress" in opts else "plain")
    outcomes = []
    for i, ((eid, veid, owner, other), (running, before), reply) in enumerate(
            zip(cts, plan, replies)):
        settled = H.wait_for(lambda: _view_settled(owner, other, eid, running, veid),
                             SETTLE_S, 0.3)
        one = "%s: veid %d %s→%s (%s)" % (what, veid, owner.node.name[-1], other.node.name[-1],
                                          "running" if running else "stopped")
        assert settled, "%s: not settled in %d s\n%s\n%s" % (
            one, SETTLE_S, owner.log_excerpt(40), other.log_excerpt(40))
        new_owner, new_other = settled
        M.assert_owner(new_owner, new_other, eid, veid, running=running, what=one,
                       other_uses_veid=False)
        diff = M.manifest_diff(before, M.manifest(_data_dir(new_owner, veid)))
        assert diff == [], "%s: the data differs from before the round:\n%s" % (
            one, "\n".join(diff[:40]))
        if isinstance(reply, H.Reply) and reply.error is None:
            assert new_owner is other, "%s: OK reply but the container stayed" % one
        outcomes.append("veid %d %s" % (veid, "moved" if new_owner is other else "stayed"))
        cts[i] = [eid, veid, new_owner, new_other]
    log.append("%s → %s" % (what, ", ".join(outcomes)))


def test_two_containers_crossing(ct_nodes, ct_admin):
    """Two containers migrate at once, each from wherever it is (the same way or crossing),
    while one node is killed, its registry locked or the links reset: after each round,
    each container is whole on exactly one node with its data as it was. This covers what
    one container cannot: two migrations sharing an agent's journal, its in-doubt job and
    its recovery, in both roles at once."""
    rng = random.Random(_seed() + 1)
    p = M.Pair(ct_nodes, ct_admin)
    cts = []
    with p.src.client() as c:
        for veid in VEIDS_TWO:
            _, env = create(c, name="chaos%d" % veid, hostname="c%d.example.test" % veid,
                            veid=veid, ip=p.src.ip(veid % 200 + 2))
            _make_data(p.src, rng, veid)
            cts.append([env["eid"], veid, p.src, p.dst])
    log = []
    pace = [0.8]
    try:
        for rnd in range(max(1, _rounds() // 2)):
            _round_two(p, rng, rnd, cts, log, pace)
    finally:
        print("\n".join(log))
