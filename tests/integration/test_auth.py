"""system/login through PAM, authorization, one-time passes, failed-login slowdown."""

import os
import pty
import re
import select
import subprocess
import time

import pytest

import ctahelpers as H
from ctahelpers import expect_error, expect_ok

pytestmark = pytest.mark.root
TLS_AND_PLAIN = pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])


@TLS_AND_PLAIN
def test_admin_login(node_a, users, xsd, tls):
    with node_a.client(tls=tls) as c:
        r = c.call(H.login_packet(users.admin, users.admin_pw, id="lg1"))
        expect_ok(r, "admin login")
        assert r.id == "lg1" and r.origin == "system" and r.target == c.name, r.text
        assert r.find("system", "token") is not None, "login reply without system/token:\n" + r.text
        H.assert_valid(r, "login reply")
        # Management works for an admin.
        r = c.sys("<generate_pass/>")
        expect_ok(r, "generate_pass as admin")
        H.assert_valid(r, "generate_pass reply")


def test_wrong_password_and_unknown_user_look_the_same(node_a, users, xsd):
    with node_a.client(src=H.fresh_src_addr()) as c:
        r1 = c.login(users.admin, users.admin_pw + "x")
        expect_error(r1, H.E_AUTH_FAILED, "wrong password")
        H.assert_valid(r1, "auth failed error")
    with node_a.client(src=H.fresh_src_addr(), tls=False) as c:
        r2 = c.login("cta-it-no-such-user-%d" % time.time_ns(), "whatever")
        expect_error(r2, H.E_AUTH_FAILED, "unknown user")
    assert r1.error[1] == r2.error[1], "messages differ: %r vs %r" % (r1.error[1], r2.error[1])
    # The failed connection is still not logged in.
    with node_a.client(src=H.fresh_src_addr()) as c:
        expect_error(c.login(users.admin, ""), H.E_AUTH_FAILED, "empty password")
        expect_error(c.sys("<get_eid/>"), H.E_NOT_LOGGED_IN, "get_eid after a failed login")


def test_failed_login_then_success_on_same_connection(node_a, users):
    with node_a.client(src=H.fresh_src_addr()) as c:
        expect_error(c.login(users.admin, "wrong"), H.E_AUTH_FAILED)
        c.login_ok(users.admin, users.admin_pw)
        c.get_eid()


def test_second_login_on_a_connection(node_a, users):
    with node_a.client() as c:
        c.login_ok(users.admin, users.admin_pw)
        r = c.login(users.user, users.user_pw)
        expect_error(r, 303, "second system/login on one connection")
        c.get_eid()
        expect_ok(c.sys("<generate_pass/>"), "still the first (admin) session")


def test_non_admin_user(node_a, users):
    with node_a.client() as c:
        c.login_ok(users.user, users.user_pw)
        eid = c.get_eid()
        assert H.UUID_RE.match(eid), eid
        expect_ok(c.ping(), "ping as non-admin")
        expect_ok(c.sys("<get_version/>"), "get_version as non-admin")
        expect_ok(c.sys("<get_realm/>"), "get_realm as non-admin")
        r = c.sys("<generate_pass/>", cookie="na")
        expect_error(r, H.E_ACCESS_DENIED, "generate_pass as non-admin")
        assert r.cookie == "na"
        r = c.call(H.packet("<vzaenvm><get_list/></vzaenvm>", id=H.new_id(), target="vzaenvm"))
        expect_error(r, H.E_ACCESS_DENIED, "vzaenvm/get_list as non-admin")
        # (subscribe/cancel are allowed to any user: docs/protocol.md.)


def _generate_pass(node):
    with node.client() as c:
        c.login_ok(node.admin_user, node.admin_pw)
        r = expect_ok(c.sys("<generate_pass/>"), "generate_pass")
    p = r.find("system", "pass")
    assert p is not None, "no system/pass:\n" + r.text
    name_el = r.child("name", p)
    realm_el = r.child("realm", p)
    assert name_el is not None and realm_el is not None, r.text
    assert r.child("password", p) is None, "a one-time pass must not carry a password"
    raw_name = (name_el.text or "").strip()
    assert H.UUID_RE.match(H.unb64(raw_name)), "pass name %r is not base64(uuid)" % raw_name
    assert (realm_el.text or "").strip() == H.REALM_ONETIME, r.text
    return raw_name


def test_one_time_pass(node_a, node_b, users):
    node_b.admin_user, node_b.admin_pw = users.admin, users.admin_pw
    raw = _generate_pass(node_b)
    # Generated on B: unknown on A.
    with node_a.client(src=H.fresh_src_addr()) as c:
        expect_error(c.login(None, None, realm=H.REALM_ONETIME, raw_name=raw), H.E_AUTH_FAILED,
                     "B's one-time pass on A")
    with node_b.client() as c:
        r = c.login(None, None, realm=H.REALM_ONETIME, raw_name=raw)
        expect_ok(r, "one-time pass login")
        c.get_eid()
        expect_ok(c.ping())
    with node_b.client(src=H.fresh_src_addr()) as c:
        expect_error(c.login(None, None, realm=H.REALM_ONETIME, raw_name=raw), H.E_AUTH_FAILED,
                     "second use of a one-time pass")
    # A pass in the System realm is not a user.
    with node_b.client(src=H.fresh_src_addr()) as c:
        raw2 = _generate_pass(node_b)
        expect_error(c.login(H.unb64(raw2), "", realm=H.REALM_SYSTEM), H.E_AUTH_FAILED,
                     "one-time pass name in the System realm")
    # Passes are distinct.
    assert raw2 != raw


def test_one_time_pass_with_empty_password(node_b, users):
    node_b.admin_user, node_b.admin_pw = users.admin, users.admin_pw
    raw = _generate_pass(node_b)
    with node_b.client(tls=False) as c:
        expect_ok(c.login(None, "", realm=H.REALM_ONETIME, raw_name=raw),
                  "one-time pass with <password></password>")


def test_one_time_pass_expires(nodes, users):
    n = nodes.start(host="127.0.0.12", config={"one_time_pass_ttl": 1})
    n.admin_user, n.admin_pw = users.admin, users.admin_pw
    raw = _generate_pass(n)
    time.sleep(2.2)
    with n.client(src=H.fresh_src_addr()) as c:
        expect_error(c.login(None, None, realm=H.REALM_ONETIME, raw_name=raw), H.E_AUTH_FAILED,
                     "expired one-time pass")


def test_failed_login_slowdown(node_a, users):
    src = H.fresh_src_addr()

    def attempt(s):
        with node_a.client(src=s, timeout=30) as c:
            t0 = time.monotonic()
            r = c.login(users.admin, "definitely-wrong", timeout=30)
            took = time.monotonic() - t0
            expect_error(r, H.E_AUTH_FAILED)
            return took

    times = [attempt(src) for _ in range(4)]
    other = attempt(H.fresh_src_addr())
    assert times[3] >= times[0] + 0.25 * 0.8, (
        "4th failed login not slowed down: %s" % ["%.3f" % t for t in times])
    assert other < times[3] - 0.1, (
        "another address was slowed down too: %.3f vs %s" % (other, ["%.3f" % t for t in times]))
    # The right password still works from the slowed address (after its delay).
    with node_a.client(src=src, timeout=30) as c:
        expect_ok(c.login(users.admin, users.admin_pw, timeout=30), "good login after failures")


# ---- client certificates (authorized_clients) ----

def _keygen(ctagent_bin, home, user, name=None):
    """`ctagent keygen` in a fresh HOME: returns (cert, key, the printed line)."""
    env = {"HOME": home, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    args = [ctagent_bin, "-u", user, "keygen"] + (["--name", name] if name else [])
    p = subprocess.run(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    line = p.stdout.decode().strip()
    d = os.path.join(home, ".config", "ctagent")
    cert, key = os.path.join(d, "client.crt"), os.path.join(d, "client.key")
    assert os.stat(key).st_mode & 0o077 == 0, "the key is readable by others"
    return cert, key, line


def _authorize(node, text, mode=0o600):
    path = os.path.join(node.state_dir, "authorized_clients")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def test_certificate_login(nodes, users, ctagent_bin, tmp_path):
    """A certificate listed for the admin logs in without a password and gets the admin's
    rights; the same certificate may not log in as another user; an unlisted certificate,
    a file others may write, a locked account and plain TCP are refused; a password given
    with the certificate is checked as a password."""
    n = nodes.start(host="127.0.0.11")
    cert, key, line = _keygen(ctagent_bin, str(tmp_path / "h1"), users.admin)
    other_cert, other_key, _ = _keygen(ctagent_bin, str(tmp_path / "h2"), users.admin)
    fp, who = line.split()
    assert who == users.admin and fp.startswith("SHA256:"), line
    # keygen again changes nothing and prints the same line.
    assert _keygen(ctagent_bin, str(tmp_path / "h1"), users.admin)[2] == line
    # Lower case and a comment are fine.
    _authorize(n, "# who may log in without a password\n%s %s laptop\n" % (fp.lower(), who))

    def login(c_cert, user, password=None, tls=True):
        with n.client(src=H.fresh_src_addr(), cert=c_cert, tls=tls) as c:
            r = c.login(user, password)
            ok = r.error is None
            gp = c.sys("<generate_pass/>") if ok else None
        return r, gp

    r, gp = login((cert, key), users.admin)
    expect_ok(r, "certificate login")
    expect_ok(gp, "generate_pass after a certificate login (admin rights)")
    assert "logged in as %s with certificate %s" % (users.admin, fp) in n.log(), n.log()[-2000:]
    r, _ = login((cert, key), users.user)
    expect_error(r, H.E_AUTH_FAILED, "certificate listed for another user")
    r, _ = login((other_cert, other_key), users.admin)
    expect_error(r, H.E_AUTH_FAILED, "unlisted certificate")
    r, _ = login(None, users.admin)
    expect_error(r, H.E_AUTH_FAILED, "no certificate, no password")
    r, _ = login((cert, key), users.admin, "wrong-password")
    expect_error(r, H.E_AUTH_FAILED, "the certificate does not excuse a wrong password")
    r, _ = login(None, users.admin, tls=False)
    expect_error(r, H.E_AUTH_FAILED, "plain TCP has no certificate")

    _authorize(n, "%s %s\n" % (fp, who), mode=0o666)
    r, _ = login((cert, key), users.admin)
    expect_error(r, H.E_AUTH_FAILED, "authorized_clients writable by others")
    assert "authorized clients file" in n.log() and "ignored" in n.log()
    _authorize(n, "%s %s\n" % (fp, who))
    subprocess.run(["usermod", "-L", users.admin], check=True)
    try:
        r, _ = login((cert, key), users.admin)
        expect_error(r, H.E_AUTH_FAILED, "locked account")
    finally:
        subprocess.run(["usermod", "-U", users.admin], check=True)
    expect_ok(login((cert, key), users.admin)[0], "unlocked again")
    # Revocation takes effect at once: the file is read at every login.
    _authorize(n, "")
    r, _ = login((cert, key), users.admin)
    expect_error(r, H.E_AUTH_FAILED, "certificate removed from the file")


def test_cli_certificate_login_hint(nodes, users, ctagent_bin, tmp_path):
    """The CLI logs in with its default certificate when no password is given; refused,
    it says which line the node lacks (exit 4); --no-cert goes back to passwords."""
    n = nodes.start(host="127.0.0.11")
    home = str(tmp_path / "home")
    _, _, line = _keygen(ctagent_bin, home, users.admin)
    env = {"HOME": home, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    base = [ctagent_bin, "-H", "%s:%d" % n.tls_addr, "-u", users.admin]
    p = subprocess.run(base + ["eid"], env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 4, p.stderr.decode()
    assert line in p.stderr.decode(), p.stderr.decode()
    _authorize(n, line + "\n")
    p = subprocess.run(base + ["eid"], env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0 and H.UUID_RE.match(p.stdout.decode().strip()), (
        p.stdout.decode() + p.stderr.decode())
    p = subprocess.run(base + ["--no-cert", "eid"], env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 4 and "no password" in p.stderr.decode(), p.stderr.decode()


def _run_on_pty(argv, env, answer, timeout=30):
    """Run argv with a terminal of its own; type answer (and Enter) at the first
    "Password" prompt. Returns (exit status, everything it wrote)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, env)
    out, typed, deadline = b"", False, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.5)
            if not r:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
            if not typed and b"Password" in out:
                os.write(fd, answer.encode() + b"\n")
                typed = True
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_cli_certificate_refused_falls_back_to_a_password(nodes, users, ctagent_bin, tmp_path):
    """On a terminal, a refused certificate is not the end (as ssh falls back from keys):
    the CLI says so, asks for the password and logs in with it on the same connection."""
    n = nodes.start(host="127.0.0.11")
    home = str(tmp_path / "home")
    _keygen(ctagent_bin, home, users.admin)
    env = {"HOME": home, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    argv = [ctagent_bin, "-H", "%s:%d" % n.tls_addr, "-u", users.admin, "eid"]
    rc, out = _run_on_pty(argv, env, users.admin_pw)
    assert rc == 0, out
    assert "did not accept the client certificate" in out, out
    assert re.search(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\r?$", out,
                     re.M), out
    rc, out = _run_on_pty(argv, env, "wrong-password")
    assert rc == 4, out
