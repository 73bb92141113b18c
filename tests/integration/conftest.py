"""Fixtures for the ctagentd integration tests.

Run through meson (`meson test -C build --suite integration`) or directly:
    CTAGENTD=build/ctagentd CTAGENT=build/ctagent /usr/bin/python3 -m pytest tests/integration
Environment: CTAGENTD, CTAGENT (daemon and CLI, default build/ctagentd and build/ctagent),
XSD_ALL (default ../shared/xsd/all.xsd), CTA_IT_KEEP=1 keeps the temporary directories.
"""

import glob
import grp
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile

import pytest

import ctahelpers as H


def _sigterm(signum, frame):
    # meson's timeout sends SIGTERM: turn it into KeyboardInterrupt so that the fixtures'
    # teardown still removes the test users and stops the daemons.
    raise KeyboardInterrupt("SIGTERM")


signal.signal(signal.SIGTERM, _sigterm)


def pytest_configure(config):
    config.addinivalue_line("markers", "root: needs root (OS users, PAM)")
    config.addinivalue_line("markers", "cli: needs the ctagent CLI")


# ---------------------------------------------------------------------------------------------
# Failure output: attach the logs of the daemons a failing test used.

def _nodes_of(item):
    seen = []
    for v in getattr(item, "funcargs", {}).values():
        cands = []
        if isinstance(v, H.Node):
            cands = [v]
        elif isinstance(v, NodeFactory):
            cands = list(v.nodes)
        elif isinstance(v, (list, tuple)):
            cands = [x for x in v if isinstance(x, H.Node)]
        for n in cands:
            if n not in seen:
                seen.append(n)
    return seen


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for n in _nodes_of(item):
            rep.sections.append(("ctagentd log: %s" % n.name, n.log_tail(200)))


# ---------------------------------------------------------------------------------------------
# Binaries and directories

@pytest.fixture(scope="session", autouse=True)
def ctagentd_bin():
    path = H.ctagentd_path()
    if not os.access(path, os.X_OK):
        if os.environ.get("CTAGENTD"):
            pytest.fail("CTAGENTD=%s is not an executable file" % path, pytrace=False)
        pytest.skip("ctagentd is not built (%s); set CTAGENTD" % path)
    return path


@pytest.fixture(scope="session")
def ctagent_bin():
    path = H.ctagent_path()
    if not os.access(path, os.X_OK):
        if os.environ.get("CTAGENT"):
            pytest.fail("CTAGENT=%s is not an executable file" % path, pytrace=False)
        pytest.skip("the ctagent CLI is not built (%s); set CTAGENT" % path)
    return path


@pytest.fixture(scope="session")
def xsd():
    path = H.xsd_all_path()
    if not os.path.exists(path):
        pytest.skip("XSD_ALL=%s does not exist" % path)
    if shutil.which("xmllint") is None:
        pytest.skip("xmllint is not installed (Debian package libxml2-utils)")
    return path


def _mounts_under(path):
    prefix = path.rstrip("/") + "/"
    try:
        with open("/proc/self/mountinfo") as f:
            return [ln.split()[4] for ln in f if ln.split()[4].startswith(prefix)]
    except OSError:
        return ["?"]


def _remove_stale_tmp_roots():
    """The directories of runs that were killed before their clean-up (each holds the pid
    of its pytest in owner.pid), unless something is still mounted under one."""
    for d in glob.glob(os.path.join(tempfile.gettempdir(), "cta-it-*")):
        try:
            with open(os.path.join(d, "owner.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if not _pid_alive(pid) and not _mounts_under(d):
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def tmp_root():
    _remove_stale_tmp_roots()
    d = tempfile.mkdtemp(prefix="cta-it-")
    os.chmod(d, 0o755)
    with open(os.path.join(d, "owner.pid"), "w") as f:
        f.write("%d\n" % os.getpid())
    yield d
    if not os.environ.get("CTA_IT_KEEP"):
        shutil.rmtree(d, ignore_errors=True)


class NodeFactory:
    """Starts nodes for one test (or one scope) and stops them afterwards. A node that died
    on its own (crash) fails the test's teardown with its log."""

    def __init__(self, root, prefix):
        self.root = root
        self.prefix = prefix
        self.nodes = []
        self.count = 0

    def new(self, name=None, **kw):
        self.count += 1
        name = name or "%s-%d" % (self.prefix, self.count)
        d = os.path.join(self.root, name)
        n = H.Node(d, name=name, **kw)
        self.nodes.append(n)
        return n

    def start(self, name=None, **kw):
        return self.new(name, **kw).start()

    def finish(self):
        errors = []
        for n in self.nodes:
            if n.proc is None or n.returncode is not None:
                continue
            rc = n.proc.poll()
            if rc is not None:
                errors.append("ctagentd %s died during the test (exit status %s)\n%s"
                              % (n.name, rc, n.log_tail()))
            try:
                n.stop()
            except AssertionError as e:
                errors.append(str(e))
        if errors:
            pytest.fail("\n\n".join(errors), pytrace=False)


_factory_seq = [0]


@pytest.fixture
def nodes(tmp_root, request):
    _factory_seq[0] += 1
    f = NodeFactory(tmp_root, "n%d-%s" % (_factory_seq[0], re.sub(r"\W+", "_", request.node.name)[:40]))
    yield f
    f.finish()


class SharedNode:
    """A node shared by many tests; restarted (with the same state) if a test killed it."""

    def __init__(self, factory, **kw):
        self.node = factory.new(**kw)
        self.node.start()

    def get(self):
        if not self.node.alive():
            self.node.stop()
            self.node.start()
        return self.node


@pytest.fixture(scope="session")
def _shared_factory(tmp_root):
    f = NodeFactory(tmp_root, "shared")
    yield f
    f.finish()


@pytest.fixture(scope="session")
def _shared_a(_shared_factory):
    return SharedNode(_shared_factory, name="node-a", host="127.0.0.11")


@pytest.fixture(scope="session")
def _shared_b(_shared_factory):
    return SharedNode(_shared_factory, name="node-b", host="127.0.0.12")


def _watch(shared):
    node = shared.get()
    yield node
    if not node.alive():
        pytest.fail("ctagentd %s died during this test (exit status %s)\n%s"
                    % (node.name, node.proc.poll(), node.log_tail()), pytrace=False)


@pytest.fixture
def node_a(_shared_a):
    """The shared node A on 127.0.0.11 (TLS and plain, default config)."""
    yield from _watch(_shared_a)


@pytest.fixture
def node_b(_shared_b):
    """The shared node B on 127.0.0.12."""
    yield from _watch(_shared_b)


# ---------------------------------------------------------------------------------------------
# OS users (root only)

class Users:
    def __init__(self, admin, admin_pw, plain, plain_pw, group):
        self.admin, self.admin_pw = admin, admin_pw
        self.user, self.user_pw = plain, plain_pw
        self.group = group


def _run(argv, input=None):
    p = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(argv), p.returncode,
                                                  (p.stdout + p.stderr).decode(errors="replace")))
    return p


def _user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _remove_stale_users():
    """Remove cta-it-<pid> users left behind by a test run that was killed."""
    for pw in pwd.getpwall():
        m = re.match(r"^cta-it-(\d+)(-u)?$", pw.pw_name)
        if not m:
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        subprocess.run(["userdel", pw.pw_name], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


PAM_FILE = "/etc/pam.d/ctagent"
# What this fixture installed, with the pid of the pytest that did: a run killed before its
# clean-up leaves the group and the PAM file behind, and without the marker the next run
# would take them for the machine's own and keep them for good.
INSTALLED_MARKER = "/var/tmp/ctagent-tests-installed"


def _read_marker():
    """{what: pid} of the marker ("group" and "pam"), {} if there is none."""
    out = {}
    try:
        with open(INSTALLED_MARKER) as f:
            for line in f:
                m = re.match(r"^(group|pam) (\d+)$", line.strip())
                if m:
                    out[m.group(1)] = int(m.group(2))
    except OSError:
        pass
    return out


def _write_marker(marks):
    if not marks:
        try:
            os.unlink(INSTALLED_MARKER)
        except OSError:
            pass
        return
    with open(INSTALLED_MARKER + ".tmp", "w") as f:
        f.write("".join("%s %d\n" % kv for kv in sorted(marks.items())))
    os.replace(INSTALLED_MARKER + ".tmp", INSTALLED_MARKER)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _remove_stale_installs():
    """The group and PAM file a killed earlier run installed: gone, so that this run
    installs (and removes) its own. A live run's are left to it."""
    marks = _read_marker()
    for what, pid in list(marks.items()):
        if _pid_alive(pid):
            continue
        if what == "group":
            subprocess.run(["groupdel", "ctagent"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        else:
            try:
                os.unlink(PAM_FILE)
            except OSError:
                pass
        del marks[what]
    _write_marker(marks)


def _mark(what, on):
    marks = _read_marker()
    if on:
        marks[what] = os.getpid()
    elif marks.get(what) == os.getpid():
        del marks[what]
    _write_marker(marks)


@pytest.fixture(scope="session")
def users():
    if os.geteuid() != 0:
        pytest.skip("needs root: the tests create throwaway OS users for PAM logins")
    for tool in ("useradd", "userdel", "chpasswd", "groupadd"):
        if shutil.which(tool) is None:
            pytest.skip("%s is not installed" % tool)
    _remove_stale_users()
    _remove_stale_installs()
    group = "ctagent"
    created_group = False
    installed_pam = False
    admin = "cta-it-%d" % os.getpid()
    plain = "cta-it-%d-u" % os.getpid()
    # Printable ASCII with XML-special characters: they travel base64-encoded.
    admin_pw = "Pw&<a>'" + secrets.token_hex(8)
    plain_pw = "Pw\"u&" + secrets.token_hex(8)
    made = []
    try:
        try:
            grp.getgrnam(group)
        except KeyError:
            _run(["groupadd", "--system", group])
            created_group = True
            _mark("group", True)
        if not os.path.exists(PAM_FILE):
            src = os.path.join(H.PROJECT_ROOT, "dist", "pam.d", "ctagent")
            if os.path.exists(src):
                shutil.copyfile(src, PAM_FILE)
            else:
                # dist/pam.d/ctagent is not written yet: the same two includes it will have.
                with open(PAM_FILE, "w") as f:
                    f.write("# installed by tests/integration (dist/pam.d/ctagent missing)\n"
                            "@include common-auth\n@include common-account\n")
            installed_pam = True
            _mark("pam", True)
            os.chmod(PAM_FILE, 0o644)
        for name in (admin, plain):
            if _user_exists(name):
                _run(["userdel", name])
        _run(["useradd", "-M", "-s", "/usr/sbin/nologin", "-G", group, admin])
        made.append(admin)
        _run(["useradd", "-M", "-s", "/usr/sbin/nologin", plain])
        made.append(plain)
        _run(["chpasswd"], input=("%s:%s\n%s:%s\n" % (admin, admin_pw, plain, plain_pw)).encode())
        yield Users(admin, admin_pw, plain, plain_pw, group)
    finally:
        for name in made:
            subprocess.run(["userdel", name], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        if created_group:
            subprocess.run(["groupdel", group], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            _mark("group", False)
        if installed_pam:
            try:
                os.unlink(PAM_FILE)
            except OSError:
                pass
            _mark("pam", False)
