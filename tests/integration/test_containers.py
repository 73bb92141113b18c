"""vzaenvm with real LXC containers: create, start, stop, restart, destroy busybox containers
over the XML API and check the outcome on the machine (pid namespace, hostname, ping, private
area, LXC config, registry); refusals; crash safety of the agent; on_boot; status events; two
agents on one machine.

Needs root, liblxc tools, busybox-static, iproute2, ping (or busybox ping), nsenter, sqlite3
(skipped otherwise).
Fixtures: ctfixtures.py (container nodes and their cleanup) on top of conftest.py.
"""

import os
import re
import signal
import time
import uuid

import pytest

import ctahelpers as H
import ctfixtures as F
from ctfixtures import ct_admin, ct_nodes, ct_template_dir  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: runs real LXC containers"),
]


# ---------------------------------------------------------------------------------------------
# Calls with failure messages that carry the request and the reply

def call(c, call_xml, what=None, timeout=None):
    pkt = F.envm_packet(call_xml)
    r = c.call(pkt, timeout=timeout or F.CT_TIMEOUT)
    r.request = pkt
    r.what = what or call_xml[:60]
    return r


def ok(c, call_xml, what=None, timeout=None):
    r = call(c, call_xml, what, timeout)
    assert r.error is None, "%s: expected success, got error %r\n--- request ---\n%s\n" \
                            "--- reply ---\n%s" % (r.what, r.error, r.request, r.text)
    return r


def err(c, call_xml, code, what=None):
    r = call(c, call_xml, what)
    assert r.code == code, "%s: expected error %s, got %r\n--- request ---\n%s\n" \
                           "--- reply ---\n%s" % (r.what, code, r.error, r.request, r.text)
    return r


def create(c, what="create", **cfg):
    r = ok(c, "<create>%s</create>" % F.config_xml(**cfg), what)
    envs = F.env_dicts(r)
    assert len(envs) == 1 and envs[0].get("eid"), "%s: no <env><eid> in the reply\n%s" % (
        what, r.text)
    assert H.UUID_RE.match(envs[0]["eid"]), r.text
    return r, envs[0]


def lifecycle(c, name, eid, extra=""):
    return ok(c, "<%s><eid>%s</eid>%s</%s>" % (name, eid, extra, name), "%s %s" % (name, eid))


def get_info(c, eids=(), config=True):
    body = "".join("<eid>%s</eid>" % e for e in eids) + ("<config/>" if config else "")
    r = ok(c, "<get_info>%s</get_info>" % body, "get_info")
    return r, {e["eid"].lower(): e for e in F.env_dicts(r)}


def status(c, eid):
    _, envs = get_info(c, [eid], config=False)
    e = envs.get(eid.lower())
    return None if e is None else (e.get("state"), e.get("transition", 0))


def get_list(c, extra=""):
    r = ok(c, "<get_list>%s</get_list>" % extra, "get_list")
    return [(e.text or "").strip().lower() for e in r.iter("eid")]


def wait_status(c, eid, want, timeout=30):
    got = H.wait_for(lambda: status(c, eid) == want, timeout, interval=0.3)
    return got or status(c, eid)


def running_init(ct, veid, what):
    """Checks that the container's init runs in its own pid namespace; returns its pid."""
    pid = ct.init_pid(veid)
    assert pid, "%s: lxc-info finds no init pid for %s (state %s)\n%s" % (
        what, ct.lxc_name(veid), ct.lxc_state(veid), ct.log_excerpt())
    assert F.pid_alive(pid), "%s: init pid %d is not alive" % (what, pid)
    assert F.ns_of(pid, "pid") != F.ns_of("self", "pid"), \
        "%s: init %d shares our pid namespace" % (what, pid)
    assert F.nspid(pid)[-1] == 1, "%s: init %d is not pid 1 in its namespace (NSpid %s)" % (
        what, pid, F.nspid(pid))
    assert F.ns_of(pid, "uts") != F.ns_of("self", "uts"), "%s: shares our uts ns" % what
    assert F.ns_of(pid, "net") != F.ns_of("self", "net"), "%s: shares our net ns" % what
    return pid


def hostname_of(pid):
    rc, out = F.run(["nsenter", "-t", str(pid), "-u", "hostname"])
    assert rc == 0, "nsenter -t %d -u hostname: %s" % (pid, out)
    return out.strip()


def _cgroup2_mount():
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return parts[1]
    return None


def cgroup_value(pid, controller, key_v1, key_v2):
    """The process's cgroup file for a controller: the v1 hierarchy's key_v1 if the
    controller is mounted as v1, else the unified hierarchy's key_v2; None if neither."""
    v2_path = None
    with open("/proc/%d/cgroup" % pid) as f:
        for line in f:
            num, ctrls, path = line.rstrip("\n").split(":", 2)
            if num == "0" and ctrls == "":
                v2_path = path
            elif controller in ctrls.split(","):
                p = "/sys/fs/cgroup/%s%s/%s" % (ctrls, path, key_v1)
                if os.path.exists(p):
                    with open(p) as g:
                        return g.read().strip()
    mnt = _cgroup2_mount()
    if v2_path is not None and mnt:
        p = "%s%s/%s" % (mnt, v2_path, key_v2)
        if os.path.exists(p):
            with open(p) as g:
                return g.read().strip()
    return None


# ---------------------------------------------------------------------------------------------

def test_lifecycle_busybox(ct_nodes, xsd):
    ct = ct_nodes.start(host="127.0.0.11")
    ip = ct.ip(10)
    desc = "Test container <1> & \"friends\"\nsecond line"
    with ct.client() as c:
        r, env = create(c, name="web-%d" % os.getpid(), hostname="web01.example.test", veid=101,
                        ip=ip, description=desc, on_boot=False, mem_bytes=256 << 20,
                        cpu_percent=50)
        H.assert_valid(r, "create reply")
        eid = env["eid"].lower()
        assert env.get("parent_eid", "").lower() == ct.eid.lower(), r.text
        assert env.get("state") == F.ST_DOWN, "create reply state: %s" % r.text

        # The private area and the LXC config exist; the registry has the row.
        priv = os.path.join(ct.private_root, "101")
        assert os.path.isfile(os.path.join(priv, "bin", "busybox")), \
            "no busybox in the private area %s: %s" % (priv, os.listdir(ct.state_dir))
        assert os.path.isfile(os.path.join(ct.lxcpath, ct.lxc_name(101), "config"))
        assert ct.db_count() == 1

        r, envs = get_info(c, [eid])
        H.assert_valid(r, "get_info reply (config)")
        e = envs.get(eid)
        assert e, "get_info does not list %s\n%s" % (eid, r.text)
        assert (e.get("state"), e.get("transition", 0)) == (F.ST_DOWN, 0), r.text
        assert e.get("veid") == "101", r.text
        assert e.get("hostname") == "web01.example.test", r.text
        assert e.get("name") == "web-%d" % os.getpid(), r.text
        assert H.unb64(e.get("description")) == desc, r.text
        assert e.get("on_boot") in ("false", "0"), r.text
        assert e.get("os_template") == "busybox", r.text
        assert [a[0].split("/")[0] for a in e["addresses"]] == [ip], r.text
        assert e["qos"].get("slmmemorylimit") == str(256 << 20), r.text
        assert e["qos"].get("cpulimit") == "50", r.text
        assert e.get("ve_private", "").rstrip("/") == priv, r.text
        r2, _ = get_info(c, [], config=False)
        H.assert_valid(r2, "get_info reply (all, no config)")

        # start: init in its own pid namespace, hostname, reachable
        H.assert_valid(lifecycle(c, "start", eid), "start reply")
        assert status(c, eid) == (F.ST_RUNNING, 0)
        pid = running_init(ct, 101, "after start")
        assert hostname_of(pid) == "web01.example.test"
        with open("/proc/%d/root/etc/hostname" % pid) as f:
            assert f.read().strip() == "web01.example.test"
        up, out = F.ping(ip)
        assert up, "container %s not reachable from the host (bridge %s):\n%s\n%s" % (
            ip, ct.bridge, out, F.run(["ip", "addr", "show", ct.bridge])[1])
        mem = cgroup_value(pid, "memory", "memory.limit_in_bytes", "memory.max")
        assert mem == str(256 << 20), "memory limit (qos slmmemorylimit) not applied: %s" % mem
        quota = cgroup_value(pid, "cpu", "cpu.cfs_quota_us", "cpu.max")
        assert quota is not None and quota.split()[0] == "50000", \
            "cpu limit (qos cpulimit 50) not applied: quota %s" % quota

        # stop
        H.assert_valid(lifecycle(c, "stop", eid), "stop reply")
        assert status(c, eid) == (F.ST_DOWN, 0)
        assert H.wait_for(lambda: not F.pid_alive(pid), 5), "init %d still alive after stop" % pid
        assert ct.lxc_state(101) == "STOPPED"

        # start again, then restart: a new init
        lifecycle(c, "start", eid)
        pid1 = running_init(ct, 101, "second start")
        lifecycle(c, "restart", eid)
        assert status(c, eid) == (F.ST_RUNNING, 0)
        pid2 = running_init(ct, 101, "after restart")
        assert pid2 != pid1 and not F.pid_alive(pid1), "restart kept init %d" % pid1
        assert F.ping(ip)[0], "not reachable after restart"
        lifecycle(c, "stop", eid, "<force/>")
        assert status(c, eid) == (F.ST_DOWN, 0)

        # destroy: private area, LXC config, registry row and listings gone
        H.assert_valid(lifecycle(c, "destroy", eid), "destroy reply")
        assert not os.path.exists(priv), "private area %s left after destroy: %s" % (
            priv, os.listdir(priv))
        assert not os.path.exists(os.path.join(ct.lxcpath, ct.lxc_name(101)))
        assert [n for n in os.listdir(ct.private_root)] == [], os.listdir(ct.private_root)
        r, envs = get_info(c, [])
        assert eid not in envs, "get_info still lists %s\n%s" % (eid, r.text)
        assert eid not in get_list(c)
        H.assert_valid(ok(c, "<get_list/>", "get_list"), "get_list reply")
        assert ct.db_count() == 0
        err(c, "<start><eid>%s</eid></start>" % eid, 400, "start after destroy")


def test_refusals(ct_nodes):
    ct = ct_nodes.start(host="127.0.0.11")
    with ct.client() as c:
        _, a = create(c, name="a", hostname="a", veid=101, ip=ct.ip(10))
        eid = a["eid"]
        priv = os.path.join(ct.private_root, "101")

        # the same IP (even written as a.b.c.d/24) → 405, nothing made
        err(c, "<create>%s</create>" % F.config_xml(name="b", veid=102, ip=ct.ip(10)), 405,
            "create with a used IP")
        err(c, "<create>%s</create>" % F.config_xml(name="b2", veid=103, ip=ct.ip(10) + "/24",
                                                    netmask=None), 405,
            "create with a used IP in CIDR form")
        assert not os.path.exists(os.path.join(ct.private_root, "102"))
        # the same veid → 402, and the first container's private area is untouched
        err(c, "<create>%s</create>" % F.config_xml(name="c", veid=101, ip=ct.ip(11)), 402,
            "create with a used veid")
        assert os.path.isfile(os.path.join(priv, "bin", "busybox")), \
            "the veid clash damaged the existing private area"
        assert ct.db_count() == 1
        assert sorted(os.listdir(ct.private_root)) == ["101"], os.listdir(ct.private_root)

        # unknown eid → 400 on every call that names one
        unknown = str(uuid.uuid4())
        for name in ("start", "stop", "restart", "destroy"):
            err(c, "<%s><eid>%s</eid></%s>" % (name, unknown, name), 400, name + " unknown eid")
        err(c, "<set><eid>%s</eid>%s</set>" % (unknown, F.config_xml(hostname="x",
                                                                    os_template=None)),
            400, "set unknown eid")
        r, envs = get_info(c, [unknown])
        assert envs == {}, "get_info of an unknown eid should list nothing:\n%s" % r.text

        # destroy of a running container → 406, it keeps running
        lifecycle(c, "start", eid)
        pid = running_init(ct, 101, "start")
        err(c, "<destroy><eid>%s</eid></destroy>" % eid, 406, "destroy while running")
        err(c, "<start><eid>%s</eid></start>" % eid, 406, "start while running")
        assert F.pid_alive(pid) and os.path.isdir(priv)
        assert status(c, eid) == (F.ST_RUNNING, 0)
        lifecycle(c, "stop", eid)
        err(c, "<stop><eid>%s</eid></stop>" % eid, 406, "stop while down")
        lifecycle(c, "destroy", eid)
        assert ct.db_count() == 0 and not os.path.exists(priv)


def test_agent_crash_keeps_containers(ct_nodes):
    ct = ct_nodes.start(host="127.0.0.11")
    ip = ct.ip(20)
    with ct.client() as c:
        _, env = create(c, name="survivor", hostname="survivor", veid=101, ip=ip)
        eid = env["eid"]
        lifecycle(c, "start", eid)
        _, env2 = create(c, name="victim", hostname="victim", veid=102, ip=ct.ip(21))
        eid2 = env2["eid"]
        lifecycle(c, "start", eid2)
    pid = running_init(ct, 101, "before the crash")
    pid2 = running_init(ct, 102, "before the crash")
    orphan = os.path.join(ct.private_root, "999")
    os.makedirs(orphan)
    with open(os.path.join(orphan, "keep.txt"), "w") as f:
        f.write("user data\n")

    ct.kill9()
    assert F.pid_alive(pid), "the container died with the agent (SIGKILL)"
    # While the agent is down, 102 is stopped behind its back: the restarted agent must
    # see it down.
    F.run(["lxc-stop", "-k", "-P", ct.lxcpath, "-n", ct.lxc_name(102)], check=True, timeout=60)
    assert not F.pid_alive(pid2)
    ct.start()
    assert F.pid_alive(pid), "the container died when the agent restarted"
    assert ct.init_pid(101) == pid, "init pid changed across the agent restart"
    with ct.client() as c:
        assert status(c, eid) == (F.ST_RUNNING, 0), ct.log_excerpt()
        assert status(c, eid2) == (F.ST_DOWN, 0), \
            "container stopped while the agent was down is not reported down\n" + \
            ct.log_excerpt()
        assert get_list(c, "<status><state>6</state></status>") == [eid.lower()]
    log = ct.node.log().split("==== test harness: start")[-1]
    assert re.search(r"orphan private area .*/private/999", log), \
        "no 'orphan private area' for private/999 in the log after the restart\n" + \
        ct.log_excerpt()
    assert os.path.isfile(os.path.join(orphan, "keep.txt")), "the orphan area was deleted"
    assert ct.db_count() == 2
    assert F.ping(ip)[0], "container not reachable after the agent restart"
    # the restarted agent still drives both
    with ct.client() as c:
        lifecycle(c, "stop", eid)
        assert status(c, eid) == (F.ST_DOWN, 0)
        lifecycle(c, "start", eid2)
        running_init(ct, 102, "start after the reconcile")
        lifecycle(c, "stop", eid2)
    assert H.wait_for(lambda: not F.pid_alive(pid), 5)


def test_state_changed_behind_the_agent(ct_nodes):
    """While the agent runs, a container is started by hand and another stopped behind its
    back (as when its own init halts it): the next operation on each must act on what
    really runs, and the registry must say so, without an operation too. The watch's poll
    is set to an hour, so the operation itself must ask LXC. Before the fix `stop` of the
    one started by hand left it running (the registry said down), `start` answered
    "already running" for the stopped one, and get_info said running until the agent
    restarted."""
    ct = ct_nodes.start(host="127.0.0.11", config={"ct_watch_interval_s": "3600"})
    with ct.client() as c:
        _, env = create(c, name="halted", hostname="halted", veid=101, ip=ct.ip(22))
        eid = env["eid"]
        lifecycle(c, "start", eid)
        _, env2 = create(c, name="byhand", hostname="byhand", veid=102, ip=ct.ip(23))
        eid2 = env2["eid"]
        lifecycle(c, "start", eid2)
        lifecycle(c, "stop", eid2)
        # (the passes that stop started end once LXC says it is stopped)
        time.sleep(1.0)
        F.run(["lxc-start", "-P", ct.lxcpath, "-n", ct.lxc_name(102)], check=True, timeout=60)
        pid2 = running_init(ct, 102, "started by hand")
        assert status(c, eid2) == (F.ST_DOWN, 0), "seen before the stop: nothing to show"
        lifecycle(c, "stop", eid2)
        assert H.wait_for(lambda: not F.pid_alive(pid2), 30), \
            "the container started by hand still runs after stop\n" + ct.log_excerpt()
        assert ct.lxc_state(102) == "STOPPED"
        assert status(c, eid2) == (F.ST_DOWN, 0), ct.log_excerpt()

        pid = running_init(ct, 101, "before the stop behind the agent's back")
        F.run(["lxc-stop", "-k", "-P", ct.lxcpath, "-n", ct.lxc_name(101)], check=True,
              timeout=60)
        assert not F.pid_alive(pid)
        # with no operation at all: the agent's watch sees it and get_info says so
        assert wait_status(c, eid, (F.ST_DOWN, 0), 30) is True, ct.log_excerpt()
        lifecycle(c, "start", eid)
        running_init(ct, 101, "start after the watch saw it down")
        lifecycle(c, "stop", eid)
    log = ct.node.log()
    assert "(changed outside the agent); fixed" in log, ct.log_excerpt()


def test_halt_is_seen_at_once(ct_nodes):
    """A container whose init exits (killed, halted from inside, or stopped with lxc-stop)
    must show as down at once, with its event, not at the watch's next poll: the agent
    watches each running init's exit. The poll is set to an hour here, so only that can
    see it. It must also follow a container started again (a new init), and one started
    by the destination of a migration is covered by the same path (a row turned running).
    Before: up to the poll interval (10 s) with get_info saying running."""
    ct = ct_nodes.start(host="127.0.0.11", config={"ct_watch_interval_s": "3600"})
    with ct.client() as sub, ct.client() as c:
        H.expect_ok(sub.sys("<subscribe><name>env_status_subscription</name></subscribe>"),
                    "subscribe")
        _, env = create(c, name="halts", hostname="halts", veid=101, ip=ct.ip(25))
        eid = env["eid"].lower()
        for how in ("lxc-stop", "kill"):
            lifecycle(c, "start", eid)
            pid = running_init(ct, 101, "before the %s" % how)
            # (the container's own start events)
            drain_events(sub, eid, ((F.ST_DOWN, F.TR_STARTING), (F.ST_RUNNING, 0)))
            t0 = time.monotonic()
            if how == "kill":
                os.kill(pid, signal.SIGKILL)
            else:
                F.run(["lxc-stop", "-k", "-P", ct.lxcpath, "-n", ct.lxc_name(101)],
                      check=True, timeout=60)
            assert H.wait_for(lambda: not F.pid_alive(pid), 30)
            assert wait_status(c, eid, (F.ST_DOWN, 0), 8) is True, \
                "%s: not seen down within 8 s\n%s" % (how, ct.log_excerpt())
            drain_events(sub, eid, ((F.ST_DOWN, 0),), 8)
            print("%s: seen down after %.2f s" % (how, time.monotonic() - t0))
    assert "(changed outside the agent); fixed" in ct.node.log(), ct.log_excerpt()


def test_operation_waits_for_the_watch(ct_nodes):
    """The watch fixes a row under the container's lock. An operation on that container
    meanwhile must wait for it, not answer 110 "busy with another operation": nothing the
    client did explains that. The watch is made to hold the lock 3 s (a fault point);
    before, the start right after the halt failed with 110."""
    import migfixtures as M
    ct = ct_nodes.new(host="127.0.0.11", config={"ct_watch_interval_s": "3600"})
    M.arm_fault(ct, "watch_refresh", pause_ms=3000)
    ct.start()
    with ct.client() as c:
        _, env = create(c, name="waits", hostname="waits", veid=101, ip=ct.ip(26))
        eid = env["eid"]
        lifecycle(c, "start", eid)
        pid = running_init(ct, 101, "before the halt")
        os.kill(pid, signal.SIGKILL)
        M.wait_fault(ct, "watch_refresh", 30)
        t0 = time.monotonic()
        lifecycle(c, "start", eid)
        waited = time.monotonic() - t0
        running_init(ct, 101, "started while the watch held its lock")
        assert status(c, eid) == (F.ST_RUNNING, 0), ct.log_excerpt()
        print("the start waited %.2f s for the watch" % waited)
        lifecycle(c, "stop", eid)


def drain_events(sub, eid, want, timeout=15):
    """Read env_status events of eid until the new states want came, in order."""
    got, deadline = [], time.monotonic() + timeout
    while len(got) < len(want) and time.monotonic() < deadline:
        try:
            p = sub.recv(max(0.1, deadline - time.monotonic()))
        except (OSError, TimeoutError):
            break
        ev_eid, _, _, new = _event(p)
        if ev_eid == eid and new == want[len(got)]:
            got.append(new)
    assert len(got) == len(want), "events %s of %s, wanted %s" % (got, eid, want)


def test_transition_left_by_a_failed_write_is_cleared(ct_nodes):
    """A registry write that failed can leave a row in a start or stop transition: the
    write that would have cleared it is the one that failed, and no operation holds the
    container's lock any more, so nothing cleared it and get_info said "starting" until
    the agent restarted. The agent's watch must clear it and take the state LXC reports.
    The leftover is made by writing the row as such a failure leaves it: started under
    LXC, the registry still down and starting."""
    ct = ct_nodes.start(host="127.0.0.11")
    db = os.path.join(ct.state_dir, "ctagent.db")
    with ct.client() as c:
        _, env = create(c, name="stale", hostname="stale", veid=101, ip=ct.ip(24))
        eid = env["eid"]
        lifecycle(c, "start", eid)
        F.run(["sqlite3", db, "update containers set state = %d, transition = 2 "
               "where eid = '%s'" % (F.ST_DOWN, eid.lower())], check=True)
        # (read back from the file: a watch pass the start posted may clear it at once)
        rc, out = F.run(["sqlite3", db, "select state, transition from containers "
                         "where eid = '%s'" % eid.lower()])
        assert rc == 0 and out.strip() in ("%d|2" % F.ST_DOWN, "%d|0" % F.ST_RUNNING), out
        assert wait_status(c, eid, (F.ST_RUNNING, 0), 30) is True, ct.log_excerpt()
        running_init(ct, 101, "after the watch cleared the transition")
        lifecycle(c, "stop", eid)
    assert "cleared the transition 2 a failed registry write left" in ct.node.log()


def fork_servers(ct):
    """Live children of the agent named ctagentd-lxc: its liblxc fork server."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        comm, rest = st[st.index("(") + 1:st.rindex(")")], st[st.rindex(")") + 2:].split()
        if comm == "ctagentd-lxc" and int(rest[1]) == ct.node.proc.pid and rest[0] != "Z":
            found.append(int(d))
    return found


def test_fork_server(ct_nodes):
    """The liblxc children come from one fork server started with the agent (forking the
    threaded daemon itself could copy a held allocator lock). Killed, the agent still runs
    containers (it forks them itself); the server does not outlive a killed agent."""
    ct = ct_nodes.start(host="127.0.0.11")
    servers = fork_servers(ct)
    assert len(servers) == 1, "want one ctagentd-lxc child of the agent, found %r" % servers
    with open("/proc/%d/status" % servers[0]) as f:
        threads = [ln for ln in f if ln.startswith("Threads:")]
    assert threads == ["Threads:\t1\n"], "the fork server is not single threaded: %r" % threads
    fds = os.listdir("/proc/%d/fd" % servers[0])
    assert sorted(fds, key=int) == ["0", "1", "2", "3"], \
        "the fork server holds more than its socket: %r" % fds
    with ct.client() as c:
        _, env = create(c, name="zyg", hostname="zyg", veid=101, ip=ct.ip(50))
        eid = env["eid"]
        lifecycle(c, "start", eid)
        running_init(ct, 101, "started through the fork server")
        lifecycle(c, "stop", eid)
        assert ct.lxc_state(101) == "STOPPED"

        os.kill(servers[0], signal.SIGKILL)
        assert H.wait_for(lambda: not F.pid_alive(servers[0]), 5)
        lifecycle(c, "start", eid)
        pid = running_init(ct, 101, "started after the fork server died")
        assert status(c, eid) == (F.ST_RUNNING, 0)
    assert "the liblxc fork server is gone" in ct.node.log(), ct.log_excerpt()

    ct.kill9()
    ct.start()
    servers = fork_servers(ct)
    assert len(servers) == 1, "restarted agent: want one fork server, found %r" % servers
    ct.kill9()
    assert H.wait_for(lambda: not F.pid_alive(servers[0]), 5), \
        "the fork server %d outlived its SIGKILLed agent" % servers[0]
    assert F.pid_alive(pid), "the container died with the agent"
    ct.start()
    with ct.client() as c:
        lifecycle(c, "stop", eid)
        lifecycle(c, "destroy", eid)
    assert not F.pid_alive(pid)


def test_on_boot_starts_down_containers(ct_nodes):
    ct = ct_nodes.start(host="127.0.0.11")
    with ct.client() as c:
        _, e1 = create(c, name="boot", hostname="boot", veid=101, ip=ct.ip(30), on_boot=True)
        _, e2 = create(c, name="noboot", hostname="noboot", veid=102, ip=ct.ip(31),
                       on_boot=False)
        lifecycle(c, "start", e1["eid"])
        running_init(ct, 101, "start")
        lifecycle(c, "stop", e1["eid"])
        assert status(c, e1["eid"]) == (F.ST_DOWN, 0)
    assert ct.init_pid(101) is None
    ct.kill9()
    ct.start()
    with ct.client() as c:
        got = wait_status(c, e1["eid"], (F.ST_RUNNING, 0), timeout=30)
        assert got is True, "on_boot container is %s after the agent start, not running\n%s" % (
            got, ct.log_excerpt())
        running_init(ct, 101, "on_boot start")
        assert status(c, e2["eid"]) == (F.ST_DOWN, 0), "on_boot=false container changed"
        assert ct.init_pid(102) is None


def _event(r):
    """(eid, parent_eid, old, new) of an env_status_event packet. Two shapes are accepted:
    the vendor's data/env_status_event{eid, parent_eid, new, old}, or (the XSD-valid form:
    the XSDs declare no env_status_event) the same values as the base64 parameters eid,
    parent_eid, new_state, new_transition, old_state, old_transition of event/info."""
    evs = r.iter("event")
    assert len(evs) == 1, "not one <event> in:\n%s" % r.text
    ev = evs[0]
    cat = r.child("category", ev)
    assert cat is not None and cat.text == "env_status", r.text
    src = r.child("source", ev)
    assert src is not None and src.text == "vzaenvm", r.text
    data = r.iter("env_status_event")
    if data:
        d = data[0]

        def st(name):
            node = r.child(name, d)
            assert node is not None, "env_status_event without <%s>:\n%s" % (name, r.text)
            vals = {H.local(x.tag): int((x.text or "0").strip()) for x in node}
            return (vals.get("state"), vals.get("transition", 0))

        def text(name):
            node = r.child(name, d)
            return "" if node is None else (node.text or "").strip().lower()

        return text("eid"), text("parent_eid"), st("old"), st("new")
    info = r.child("info", ev)
    assert info is not None, "event without info or env_status_event:\n%s" % r.text
    params = {}
    for p in r.children("parameter", info):
        name, msg = r.child("name", p), r.child("message", p)
        params[(name.text or "").strip()] = H.unb64(msg.text if msg is not None else "")
    try:
        return (params["eid"].lower(), params["parent_eid"].lower(),
                (int(params["old_state"]), int(params["old_transition"])),
                (int(params["new_state"]), int(params["new_transition"])))
    except (KeyError, ValueError):
        raise AssertionError("event carries neither env_status_event nor the state "
                             "parameters:\n%s" % r.text)


def test_status_events(ct_nodes, xsd):
    ct = ct_nodes.start(host="127.0.0.11")
    with ct.client() as sub, ct.client() as c:
        r = sub.sys("<subscribe><name>env_status_subscription</name></subscribe>")
        H.expect_ok(r, "subscribe")
        _, env = create(c, name="ev", hostname="ev", veid=101, ip=ct.ip(40))
        eid = env["eid"].lower()
        lifecycle(c, "start", eid)
        lifecycle(c, "stop", eid)
        lifecycle(c, "destroy", eid)
        expected = [
            ((F.ST_NONEXISTENT, 0), (F.ST_CONFIG, F.TR_CREATING)),
            ((F.ST_CONFIG, F.TR_CREATING), (F.ST_DOWN, 0)),
            ((F.ST_DOWN, 0), (F.ST_DOWN, F.TR_STARTING)),
            ((F.ST_DOWN, F.TR_STARTING), (F.ST_RUNNING, 0)),
            ((F.ST_RUNNING, 0), (F.ST_RUNNING, F.TR_STOPPING)),
            ((F.ST_RUNNING, F.TR_STOPPING), (F.ST_DOWN, 0)),
            ((F.ST_DOWN, 0), (F.ST_DOWN, F.TR_DESTROYING)),
            ((F.ST_DOWN, F.TR_DESTROYING), (F.ST_NONEXISTENT, 0)),
        ]
        got, packets = [], []
        deadline = time.monotonic() + 15
        while len(got) < len(expected) and time.monotonic() < deadline:
            try:
                p = sub.recv(max(0.1, deadline - time.monotonic()))
            except (OSError, TimeoutError):
                break
            packets.append(p)
            targets = [(t.text or "").strip() for t in p.children("target")]
            assert "env_status_subscription" in targets and "events_subscription" in targets, \
                "event targets %s:\n%s" % (targets, p.text)
            assert p.id is None, "an event carries an id:\n%s" % p.text
            ev_eid, parent, old, new = _event(p)
            assert ev_eid == eid, p.text
            assert parent == ct.eid.lower(), p.text
            got.append((old, new))
        trace = "\n".join("%s -> %s" % g for g in got)
        assert got == expected, "env_status_event sequence:\n%s\nexpected:\n%s" % (
            trace, "\n".join("%s -> %s" % g for g in expected))
        ids = [p.iter("id")[0].text for p in packets]
        assert len(set(ids)) == len(ids), "event ids repeat: %s" % ids
        counts = [int(p.iter("count")[0].text) for p in packets]
        assert counts == sorted(counts) and len(set(counts)) == len(counts), counts
        for p in packets:
            H.assert_valid(p, "env_status_event")
        # after unsubscribe: nothing more
        H.expect_ok(sub.sys("<unsubscribe><name>env_status_subscription</name></unsubscribe>"),
                    "unsubscribe")
        create(c, name="ev2", hostname="ev2", veid=102)
        assert sub.wait_closed(1.0) is False


def test_two_agents_same_veid(ct_nodes):
    a = ct_nodes.new(host="127.0.0.11", name="ct-a")
    b = ct_nodes.new(host="127.0.0.12", name="ct-b")
    a.start()
    b.start()
    assert a.node_id != b.node_id, "two state dirs gave one node id %s" % a.node_id
    assert a.lxc_name(101) != b.lxc_name(101)
    ca, cb = a.client(), b.client()
    try:
        assert a.eid.lower() != b.eid.lower()
        _, ea = create(ca, name="same", hostname="ct-a", veid=101, ip=a.ip(10))
        _, eb = create(cb, name="same", hostname="ct-b", veid=101, ip=b.ip(10))
        lifecycle(ca, "start", ea["eid"])
        lifecycle(cb, "start", eb["eid"])
        pa = running_init(a, 101, "node A")
        pb = running_init(b, 101, "node B")
        assert pa != pb
        cga, cgb = open("/proc/%d/cgroup" % pa).read(), open("/proc/%d/cgroup" % pb).read()
        assert "/ctagent-%s/" % a.node_id in cga and "/ctagent-%s/" % b.node_id in cgb, \
            "containers not in their nodes' cgroups:\n%s\n%s" % (cga, cgb)
        assert hostname_of(pa) == "ct-a" and hostname_of(pb) == "ct-b"
        assert status(ca, ea["eid"]) == (F.ST_RUNNING, 0)
        assert status(cb, eb["eid"]) == (F.ST_RUNNING, 0)
        assert get_list(ca) == [ea["eid"].lower()] and get_list(cb) == [eb["eid"].lower()]
        assert a.bridge != b.bridge
        assert F.ping(a.ip(10))[0] and F.ping(b.ip(10))[0]

        lifecycle(ca, "stop", ea["eid"])
        assert status(ca, ea["eid"]) == (F.ST_DOWN, 0)
        assert H.wait_for(lambda: not F.pid_alive(pa), 5)
        assert F.pid_alive(pb) and b.init_pid(101) == pb, "stopping A's 101 touched B's 101"
        assert status(cb, eb["eid"]) == (F.ST_RUNNING, 0)
        assert F.ping(b.ip(10))[0], "B's container unreachable after A's stop"
        assert os.path.isdir(os.path.join(b.private_root, "101"))
        lifecycle(ca, "destroy", ea["eid"])
        assert F.pid_alive(pb) and os.path.isfile(
            os.path.join(b.private_root, "101", "bin", "busybox")), \
            "destroying A's 101 touched B's"
        lifecycle(cb, "stop", eb["eid"])
    finally:
        ca.close()
        cb.close()
