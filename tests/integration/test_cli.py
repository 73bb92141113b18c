"""The ctagent CLI against a real daemon: ping, fingerprint pinning, --plain, gen-pass, errors."""

import os
import re
import stat
import subprocess

import pytest

import ctahelpers as H

pytestmark = [pytest.mark.root, pytest.mark.cli]

UUID_IN_TEXT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                          r"[0-9a-fA-F]{12}")


class Cli:
    def __init__(self, binary, home):
        self.binary = binary
        self.home = home
        os.makedirs(home, exist_ok=True)

    @property
    def known_nodes(self):
        return os.path.join(self.home, ".config", "ctagent", "known_nodes")

    def run(self, args, password=None, timeout=60):
        env = {"HOME": self.home, "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "LANG": "C.UTF-8"}
        if password is not None:
            env["CTAGENT_PASSWORD"] = password
        p = subprocess.run([self.binary] + list(args), env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        p.out = p.stdout.decode("utf-8", "replace")
        p.err = p.stderr.decode("utf-8", "replace")
        p.desc = "ctagent %s → exit %d\nstdout: %s\nstderr: %s" % (
            " ".join(args), p.returncode, p.out, p.err)
        return p


@pytest.fixture
def cli(ctagent_bin, tmp_path):
    return Cli(ctagent_bin, str(tmp_path / "home"))


def hostport(addr):
    return "%s:%d" % addr


def test_cli_ping_pins_fingerprint(nodes, users, cli):
    n = nodes.start(host="127.0.0.11")
    with n.client() as c:
        fp = c.fingerprint
    p = cli.run(["-H", hostport(n.tls_addr), "-u", users.admin, "ping"], users.admin_pw)
    assert p.returncode == 0, p.desc
    assert os.path.isfile(cli.known_nodes), "no known_nodes after the first contact\n" + p.desc
    with open(cli.known_nodes) as f:
        pinned = f.read()
    entry = "%s SHA256:%s" % (hostport(n.tls_addr), fp)
    assert entry in pinned.splitlines(), (
        "known_nodes lacks the line %r:\n%s" % (entry, pinned))
    assert stat.S_IMODE(os.stat(cli.known_nodes).st_mode) == 0o600
    # Second contact with the same certificate: still fine, file unchanged.
    p = cli.run(["-H", hostport(n.tls_addr), "-u", users.admin, "ping"], users.admin_pw)
    assert p.returncode == 0, p.desc
    with open(cli.known_nodes) as f:
        assert f.read() == pinned
    # Same address and port, new state dir → new certificate → refused.
    port = n.tls_addr[1]
    assert n.stop() == 0
    n2 = nodes.start(host="127.0.0.11", tls_port=port, name="cli-impostor")
    with n2.client() as c:
        n2_fp = c.fingerprint
    assert n2_fp != fp
    p = cli.run(["-H", hostport(n2.tls_addr), "-u", users.admin, "ping"], users.admin_pw)
    assert p.returncode == 3, "a changed fingerprint: want exit 3\n" + p.desc
    assert fp in p.err and n2_fp in p.err, "both fingerprints are not shown\n" + p.desc
    with open(cli.known_nodes) as f:
        assert f.read() == pinned, "known_nodes changed after a refused fingerprint"
    # The impostor saw no login attempt: the password was not sent.
    assert users.admin not in n2.log(), "the CLI logged in to the impostor\n" + n2.log_tail()


def test_cli_plain(nodes, users, cli):
    n = nodes.start(host="127.0.0.11")
    p = cli.run(["--plain", "-H", hostport(n.plain_addr), "-u", users.admin, "ping"],
                users.admin_pw)
    assert p.returncode == 0, p.desc


def test_cli_gen_pass(nodes, users, cli):
    n = nodes.start(host="127.0.0.12")
    names = []
    for _ in range(2):
        p = cli.run(["-H", hostport(n.tls_addr), "-u", users.admin, "gen-pass"], users.admin_pw)
        assert p.returncode == 0, p.desc
        found = [u for u in UUID_IN_TEXT.findall(p.out)
                 if u not in (H.REALM_SYSTEM, H.REALM_ONETIME)]
        assert found, "no pass uuid on stdout\n" + p.desc
        assert H.REALM_ONETIME in p.out, "the realm is not printed\n" + p.desc
        names.append(found[0])
    assert names[0] != names[1]
    # Each is a live one-time pass on that node: once through the protocol...
    with n.client() as c:
        H.expect_ok(c.login(names[0], None, realm=H.REALM_ONETIME), "login with the CLI's pass")
    # ...and once through the CLI's --one-time (then it is used up).
    p = cli.run(["-H", hostport(n.tls_addr), "--one-time", names[1], "eid"])
    assert p.returncode == 0, p.desc
    p = cli.run(["-H", hostport(n.tls_addr), "--one-time", names[1], "eid"])
    assert p.returncode == 4, "a used one-time pass: want exit 4\n" + p.desc


def test_cli_wrong_password(nodes, users, cli):
    n = nodes.start(host="127.0.0.11")
    with n.client(src=H.fresh_src_addr()) as c:
        msg = H.expect_error(c.login(users.admin, "wrong"), H.E_AUTH_FAILED).error[1]
    p = cli.run(["-H", hostport(n.tls_addr), "-u", users.admin, "ping"], "wrong-password")
    assert p.returncode == 4, "a refused login: want exit 4\n" + p.desc
    assert "ctagent: error 301 (" in p.err, p.desc
    assert msg and msg in p.err, "the daemon's message %r is not shown\n%s" % (msg, p.desc)


def test_cli_unreachable_node(users, cli):
    p = cli.run(["-H", "127.0.0.13:1", "-u", users.admin, "ping"], users.admin_pw, timeout=30)
    assert p.returncode == 3, "an unreachable node: want exit 3\n" + p.desc
    assert p.err.startswith("ctagent: "), p.desc
