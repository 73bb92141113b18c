"""Fixtures and helpers for the container tests (test_containers.py): ctagentd nodes that run
real LXC containers on their own bridge, vzaenvm packet builders, reply parsing, and a cleanup
that stops every container, deletes the nodes' bridges, veths and cgroups even when a test
fails.

Needs root, liblxc's tools (lxc-info, lxc-stop), iproute2, ping (or busybox ping), nsenter,
sqlite3 and a static busybox (the busybox template is built from the host's /bin/busybox).
Reuses conftest.py's `nodes` and `tmp_root` fixtures and ctahelpers' Node/Client; logs in as
its own administrator (ct_admin, see there why not conftest's `users`).
"""

import glob
import os
import random
import re
import secrets
import shutil
import subprocess
import time

import pytest

import ctahelpers as H

LXC_TOOLS = ("lxc-info", "lxc-stop", "lxc-ls")
CT_TIMEOUT = 90.0  # seconds for one container call (create, start, stop)

# env_statusType numbers (src/ct/ct.h, docs/protocol.md)
ST_NONEXISTENT, ST_CONFIG, ST_DOWN, ST_RUNNING = 1, 2, 3, 6
TR_NONE, TR_CREATING, TR_STARTING, TR_STOPPING, TR_DESTROYING = 0, 1, 2, 3, 5


def missing_requirements():
    """Why the container tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root: the container tests run real LXC containers"
    for tool in LXC_TOOLS + ("ip", "nsenter", "sqlite3"):
        if shutil.which(tool) is None:
            return "%s is not installed" % tool
    if not any(os.path.exists(p) for p in ("/bin/busybox", "/usr/bin/busybox")):
        return "busybox is not installed (busybox-static)"
    if ping_argv() is None:
        return "neither ping nor busybox ping is available"
    return None


def run(argv, timeout=30, check=False):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(argv), p.returncode, out))
    return p.returncode, out


# ---------------------------------------------------------------------------------------------
# Addresses: one random /24 of 10.200.0.0/16 per node, not used by anything on this machine.

_used_nets = set()


def _host_nets():
    nets = set()
    _, out = run(["ip", "-4", "-o", "addr", "show"])
    _, out2 = run(["ip", "-4", "route", "show", "table", "all"])
    for m in re.finditer(r"\b(10\.200\.\d+)\.\d+", out + out2):
        nets.add(m.group(1))
    return nets


def pick_subnet():
    """'10.200.Y' for a /24 nobody on this machine uses."""
    busy = _host_nets() | _used_nets
    choices = ["10.200.%d" % y for y in range(1, 255) if "10.200.%d" % y not in busy]
    assert choices, "no free /24 in 10.200.0.0/16"
    net = random.choice(choices)
    _used_nets.add(net)
    return net


# ---------------------------------------------------------------------------------------------
# vzaenvm packets

def envm_packet(call_xml, id=None):
    return H.packet("<vzaenvm>%s</vzaenvm>" % call_xml, id=id or H.new_id("envm"),
                    target="vzaenvm")


def config_xml(*, name=None, hostname=None, veid=None, ip=None, netmask="255.255.255.0",
               description=None, on_boot=None, os_template="busybox", mem_bytes=None,
               cpu_percent=None, extra=""):
    parts = []
    if name is not None:
        parts.append("<name>%s</name>" % name)
    if hostname is not None:
        parts.append("<hostname>%s</hostname>" % hostname)
    if description is not None:
        parts.append("<description>%s</description>" % H.b64(description))
    if ip is not None:
        parts.append("<address><ip>%s</ip>%s</address>"
                     % (ip, "<netmask>%s</netmask>" % netmask if netmask else ""))
    if mem_bytes is not None:
        parts.append("<qos><id>slmmemorylimit</id><hard>%d</hard></qos>" % mem_bytes)
    if cpu_percent is not None:
        parts.append("<qos><id>cpulimit</id><hard>%d</hard></qos>" % cpu_percent)
    if veid is not None:
        parts.append("<veid>%s</veid>" % veid)
    if on_boot is not None:
        parts.append("<on_boot>%s</on_boot>" % ("true" if on_boot else "false"))
    if os_template is not None:
        parts.append("<os_template><name>%s</name></os_template>" % os_template)
    parts.append(extra)
    return ('<config xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xsi:type="vzat:venv_configType">%s</config>' % "".join(parts))


def env_dicts(reply):
    """The <env> elements of a reply as dicts: eid, parent_eid, state, transition, and the
    config fields by local name (address → list of (ip, netmask), qos → {id: hard})."""
    out = []
    for env in reply.iter("env"):
        d = {"addresses": [], "qos": {}}
        for c in env:
            tag = H.local(c.tag)
            if tag in ("eid", "parent_eid"):
                d[tag] = (c.text or "").strip()
            elif tag == "status":
                for s in c:
                    try:
                        d[H.local(s.tag)] = int((s.text or "").strip())
                    except ValueError:
                        d[H.local(s.tag)] = (s.text or "").strip()
            elif tag in ("config", "virtual_config"):
                for f in c:
                    ft = H.local(f.tag)
                    if ft == "address":
                        ip = nm = None
                        for a in f:
                            if H.local(a.tag) == "ip":
                                ip = (a.text or "").strip()
                            elif H.local(a.tag) == "netmask":
                                nm = (a.text or "").strip()
                        d["addresses"].append((ip, nm))
                    elif ft == "qos":
                        q = {H.local(a.tag): (a.text or "").strip() for a in f}
                        d["qos"][q.get("id")] = q.get("hard")
                    elif ft == "os_template":
                        for a in f:
                            if H.local(a.tag) == "name":
                                d["os_template"] = (a.text or "").strip()
                    elif len(f) == 0:
                        d[ft] = (f.text or "").strip()
        out.append(d)
    return out


# ---------------------------------------------------------------------------------------------
# A node that runs containers

class CtNode:
    """A ctagentd (ctahelpers.Node) with a bridge address, plus container helpers."""

    def __init__(self, node, subnet, admin):
        self.node = node
        self.subnet = subnet  # "10.200.Y"
        self.admin = admin
        self.node_id = None
        self.eid = None

    # -- process
    @property
    def state_dir(self):
        return self.node.state_dir

    @property
    def lxcpath(self):
        return os.path.join(self.node.state_dir, "lxc")

    @property
    def private_root(self):
        return os.path.join(self.node.state_dir, "private")

    @property
    def bridge(self):
        return self.node.config.get("bridge") or ("ctabr-%s" % self.node_id)

    def ip(self, host):
        return "%s.%d" % (self.subnet, host)

    def start(self):
        self.node.start(timeout=60)
        m = H.wait_for(lambda: re.findall(r"containers: \w+ backend, node id ([a-z0-9]+)",
                                          self.node.log()), 5)
        assert m, "no 'containers: ... node id' line in the log\n" + self.node.log_tail()
        assert self.node_id in (None, m[-1]), "node id changed across a restart: %s → %s" % (
            self.node_id, m[-1])
        self.node_id = m[-1]
        return self

    def kill9(self):
        self.node.proc.kill()
        self.node.proc.wait(10)
        self.node.returncode = self.node.proc.returncode
        if self.node.logf:
            self.node.logf.close()
            self.node.logf = None

    def lxc_name(self, veid):
        return "cta-%s-%s" % (self.node_id, veid)

    # -- protocol
    def client(self, **kw):
        kw.setdefault("timeout", CT_TIMEOUT)
        c = self.node.client(tls=True, **kw)
        c.login_ok(self.admin.admin, self.admin.admin_pw)
        if self.eid is None:
            self.eid = c.get_eid()
        return c

    # -- looking at the machine
    def init_pid(self, veid):
        """The container's init pid from lxc-info, or None when it is not running."""
        rc, out = run(["lxc-info", "-P", self.lxcpath, "-n", self.lxc_name(veid), "-p", "-H"])
        out = out.strip()
        return int(out) if rc == 0 and out.isdigit() else None

    def lxc_state(self, veid):
        rc, out = run(["lxc-info", "-P", self.lxcpath, "-n", self.lxc_name(veid), "-s", "-H"])
        return out.strip() if rc == 0 else None

    def db_count(self, where=""):
        rc, out = run(["sqlite3", os.path.join(self.state_dir, "ctagent.db"),
                       "select count(*) from containers %s" % where])
        assert rc == 0, "sqlite3 failed: %s" % out
        return int(out.strip().splitlines()[-1])

    def log_excerpt(self, n=60):
        return self.node.log_tail(n)


def pid_alive(pid):
    if not pid:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def ns_of(pid, kind):
    return os.readlink("/proc/%s/ns/%s" % (pid, kind))


def nspid(pid):
    """The NSpid line of /proc/PID/status: the pid in each nested pid namespace."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("NSpid:"):
                return [int(x) for x in line.split()[1:]]
    return []


def ping_argv():
    """ping, or busybox's ping applet when iputils is not installed."""
    if shutil.which("ping"):
        return ["ping"]
    bb = shutil.which("busybox")
    if bb and "ping" in run([bb, "--list"])[1].split():
        return [bb, "ping"]
    return None


def ping(ip, tries=5):
    out = ""
    for _ in range(tries):
        rc, out = run(ping_argv() + ["-c1", "-W2", ip], timeout=10)
        if rc == 0:
            return True, out
        time.sleep(0.3)
    return False, out


# ---------------------------------------------------------------------------------------------
# Cleanup of one node's containers and network

def _rmdir_tree(path):
    """rmdir a cgroup directory and its children, deepest first (cgroupfs has no files to
    unlink)."""
    for root, dirs, _files in os.walk(path, topdown=False):
        for d in dirs:
            try:
                os.rmdir(os.path.join(root, d))
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def cleanup_node(ct):
    """Stop every container under the node's lxcpath (no daemon needed), then delete its bridge,
    leftover veths and cgroup directories. Returns a list of problems (strings)."""
    problems = []
    if os.path.isdir(ct.lxcpath):
        for name in sorted(os.listdir(ct.lxcpath)):
            if not os.path.isfile(os.path.join(ct.lxcpath, name, "config")):
                continue
            rc, out = run(["lxc-info", "-P", ct.lxcpath, "-n", name, "-s", "-H"])
            if rc == 0 and out.strip() not in ("STOPPED", ""):
                rc, out = run(["lxc-stop", "-k", "-P", ct.lxcpath, "-n", name], timeout=60)
                if rc != 0:
                    problems.append("lxc-stop -k %s: %s" % (name, out))
    if ct.node_id:
        _, links = run(["ip", "-o", "link", "show"])
        for m in re.finditer(r"^\d+:\s+([^:@\s]+)", links, re.M):
            ifname = m.group(1)
            if ifname == "ctabr-%s" % ct.node_id or ifname.startswith("v%s." % ct.node_id) \
                    or ifname == ct.node.config.get("bridge"):
                rc, out = run(["ip", "link", "del", ifname])
                if rc != 0 and "Cannot find device" not in out:
                    problems.append("ip link del %s: %s" % (ifname, out))
        for d in glob.glob("/sys/fs/cgroup/*/ctagent-%s" % ct.node_id) + \
                glob.glob("/sys/fs/cgroup/ctagent-%s" % ct.node_id):
            _rmdir_tree(d)
    return problems


# ---------------------------------------------------------------------------------------------
# The administrator the container tests log in as. Not conftest's `users`: that fixture shares
# the group "ctagent" and /etc/pam.d/ctagent with every other pytest session on the machine,
# and another session that ends removes them (the group's removal drops our user's membership:
# every management call then answers 302). Here: a user, an admin group and a PAM service
# of this session's own, given to the nodes as admin_group and pam_service.

class CtAdmin:
    def __init__(self, user, password, group, service):
        self.admin, self.admin_pw, self.group, self.service = user, password, group, service


def _pid_dead(pid):
    try:
        os.kill(pid, 0)
        return False
    except ProcessLookupError:
        return True
    except PermissionError:
        return False


def _remove_stale_admins():
    """Users, groups and PAM files of container test sessions that were killed."""
    import grp
    import pwd
    for pw in pwd.getpwall():
        m = re.match(r"^ctct-(\d+)$", pw.pw_name)
        if m and _pid_dead(int(m.group(1))):
            run(["userdel", pw.pw_name])
    for g in grp.getgrall():
        m = re.match(r"^ctctadm-(\d+)$", g.gr_name)
        if m and _pid_dead(int(m.group(1))):
            run(["groupdel", g.gr_name])
    for path in glob.glob("/etc/pam.d/ctct-*"):
        m = re.match(r"^ctct-(\d+)$", os.path.basename(path))
        if m and _pid_dead(int(m.group(1))):
            try:
                os.unlink(path)
            except OSError:
                pass


@pytest.fixture(scope="session")
def ct_admin():
    why = missing_requirements()
    if why:
        pytest.skip(why)
    for tool in ("useradd", "userdel", "groupadd", "groupdel", "chpasswd"):
        if shutil.which(tool) is None:
            pytest.skip("%s is not installed" % tool)
    _remove_stale_admins()
    pid = os.getpid()
    user, group, service = "ctct-%d" % pid, "ctctadm-%d" % pid, "ctct-%d" % pid
    pam_path = "/etc/pam.d/" + service
    # Leftovers with our own pid in their names can only come from a killed
    # earlier session whose pid was reused: no live process owns them.
    run(["userdel", user])
    run(["groupdel", group])
    if os.path.exists(pam_path):
        os.unlink(pam_path)
    password = "Ct&<pw>'" + secrets.token_hex(8)
    made_user = made_group = False
    try:
        run(["groupadd", "--system", group], check=True)
        made_group = True
        run(["useradd", "-M", "-s", "/usr/sbin/nologin", "-G", group, user], check=True)
        made_user = True
        p = subprocess.run(["chpasswd"], input=("%s:%s\n" % (user, password)).encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        assert p.returncode == 0, "chpasswd: %s" % p.stdout.decode(errors="replace")
        with open(pam_path, "w") as f:
            f.write("# ctagent container tests (tests/integration/ctfixtures.py), removed at "
                    "the end of the session\n@include common-auth\n@include common-account\n")
        os.chmod(pam_path, 0o644)
        yield CtAdmin(user, password, group, service)
    finally:
        if made_user:
            run(["userdel", user])
        if made_group:
            run(["groupdel", group])
        try:
            os.unlink(pam_path)
        except OSError:
            pass


class CtFactory:
    """Starts container nodes for one test (through conftest's `nodes` factory, so failing
    tests get the daemons' logs) and cleans everything up afterwards."""

    def __init__(self, nodes, admin, template_dir):
        self.nodes = nodes
        self.admin = admin
        self.template_dir = template_dir
        self.cts = []

    def new(self, host="127.0.0.11", name=None, config=None, subnet=None):
        subnet = subnet or pick_subnet()
        cfg = {"bridge_cidr": "%s.1/24" % subnet, "template_dir": self.template_dir,
               "ct_backend": "lxc", "admin_group": self.admin.group,
               "pam_service": self.admin.service}
        cfg.update(config or {})
        ct = CtNode(self.nodes.new(name=name, host=host, config=cfg), subnet, self.admin)
        self.cts.append(ct)
        return ct

    def start(self, **kw):
        return self.new(**kw).start()

    def cleanup(self):
        problems = []
        for ct in self.cts:
            try:
                problems += cleanup_node(ct)
            except Exception as e:  # keep cleaning the other nodes
                problems.append("cleanup of %s: %r" % (ct.node.name, e))
        return problems


@pytest.fixture(scope="session")
def ct_template_dir(tmp_root):
    """One template directory for all container nodes: busybox is built once."""
    d = os.path.join(tmp_root, "ct-templates")
    os.makedirs(d, exist_ok=True)
    return d


@pytest.fixture
def ct_nodes(nodes, ct_admin, ct_template_dir):
    why = missing_requirements()
    if why:
        pytest.skip(why)
    f = CtFactory(nodes, ct_admin, ct_template_dir)
    yield f
    problems = f.cleanup()
    # Stop the daemons here (not in `nodes`) so that the state dirs can go.
    for ct in f.cts:
        n = ct.node
        if n.proc is not None and n.returncode is None and n.proc.poll() is not None:
            problems.append("ctagentd %s died during the test (exit status %s)\n%s"
                            % (n.name, n.proc.poll(), n.log_tail()))
        try:
            n.stop()
        except AssertionError as e:
            problems.append(str(e))
        if not os.environ.get("CTA_IT_KEEP"):
            shutil.rmtree(ct.state_dir, ignore_errors=True)
    if problems:
        pytest.fail("container cleanup problems:\n" + "\n".join(problems), pytrace=False)
