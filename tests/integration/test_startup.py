"""Command line, ready file, configuration check, listeners, TLS certificate, restart."""

import os
import re
import signal
import ssl
import stat
import subprocess
import time

import pytest

import ctahelpers as H


def test_ready_file_format_and_atomic(nodes):
    n = nodes.new(host="127.0.0.11")
    n.spawn()
    # Poll hard: a ready file written in place could be seen half-written.
    deadline = time.monotonic() + 20
    while not os.path.exists(n.ready_path):
        assert n.proc.poll() is None, "ctagentd exited early\n" + n.log_tail()
        assert time.monotonic() < deadline, "no ready file\n" + n.log_tail()
        time.sleep(0.001)
    with open(n.ready_path) as f:
        first = f.read()
    m = re.fullmatch(r"tls 127\.0\.0\.11:(\d+)\nplain 127\.0\.0\.11:(\d+)\n?", first)
    assert m, "unexpected ready file content at first sight: %r" % first
    tls_port, plain_port = int(m.group(1)), int(m.group(2))
    assert tls_port > 0 and plain_port > 0 and tls_port != plain_port
    # Both listeners accept connections as soon as the file exists.
    assert H.port_open(("127.0.0.11", tls_port)), "TLS port not listening once ready"
    assert H.port_open(("127.0.0.11", plain_port)), "plain port not listening once ready"
    time.sleep(0.1)
    with open(n.ready_path) as f:
        assert f.read() == first, "ready file changed after it appeared"
    # No temporary file left next to it.
    left = set(os.listdir(os.path.dirname(n.ready_path))) - {
        "ready", "ctagentd.conf", "ctagentd.log", "state"}
    assert not left, "files left beside the ready file: %s" % sorted(left)
    n.wait_ready()
    assert n.tls_addr == ("127.0.0.11", tls_port)
    with n.client(tls=True) as c:
        assert c.greeting.origin == "system"
    with n.client(tls=False) as c:
        assert c.greeting.origin == "system"


def test_ready_file_without_plain_listener(nodes):
    n = nodes.start(host="127.0.0.11", plain="none")
    assert re.fullmatch(r"tls 127\.0\.0\.11:\d+\n?", n.ready_content), n.ready_content
    assert n.plain_addr is None
    with n.client(tls=True) as c:
        assert c.greeting.origin == "system"


def test_sigterm_clean_shutdown(nodes):
    n = nodes.start(host="127.0.0.11")
    c = n.client(tls=True)
    p = n.client(tls=False)
    rc = n.stop(signal.SIGTERM, timeout=10)
    assert rc == 0, "exit status after SIGTERM: %s\n%s" % (rc, n.log_tail())
    assert c.wait_closed(2), "TLS client not disconnected at shutdown"
    assert p.wait_closed(2), "plain client not disconnected at shutdown"


def _check_config(config_path, text=None):
    if text is not None:
        with open(config_path, "w") as f:
            f.write(text)
    p = subprocess.run([H.ctagentd_path(), "--check-config", "--config", config_path],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=20)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def test_check_config_good(tmp_path):
    rc, out = _check_config(str(tmp_path / "good.conf"),
                            "# a comment\n"
                            "\n"
                            "idle_timeout_prelogin = 2\n"
                            "   # indented comment\n"
                            "one_time_pass_ttl = 60\n"
                            "plain_open = yes\n"
                            "max_connections = 100\n"
                            "admin_group = ctagent\n"
                            "pam_service = ctagent\n"
                            "frame_max_prelogin = 65536\n")
    assert rc == 0, out
    assert "config OK" in out, out


def test_check_config_shipped_example():
    path = os.path.join(H.PROJECT_ROOT, "dist", "ctagentd.conf")
    if not os.path.exists(path):
        pytest.skip("no dist/ctagentd.conf")
    rc, out = _check_config(path)
    assert rc == 0 and "config OK" in out, out


@pytest.mark.parametrize("text,line", [
    ("# ok\nframe_max_prelogin = 10\n", 2),
    ("# ok\nidle_timeout = 5\nno_such_key = 1\n", 3),
    ("idle_timeout = abc\n", 1),
    ("# c\n\nplain_open = maybe\n", 3),
    ("# c\nthis line has no equals sign\n", 2),
], ids=["out-of-range", "unknown-key", "bad-number", "bad-bool", "no-equals"])
def test_check_config_bad(tmp_path, text, line):
    path = str(tmp_path / "bad.conf")
    rc, out = _check_config(path, text)
    assert rc == 1, "exit status %s for a bad config:\n%s" % (rc, out)
    assert "%s:%d:" % (path, line) in out or "bad.conf:%d:" % line in out, (
        "no file:line (%s:%d:) in the message:\n%s" % (path, line, out))
    assert "config OK" not in out


def test_check_config_missing_explicit_file(tmp_path):
    rc, out = _check_config(str(tmp_path / "absent.conf"))
    assert rc != 0, "a missing explicit --config must be an error:\n" + out


def test_bad_config_refuses_start(nodes):
    n = nodes.new(host="127.0.0.11", config={"no_such_key": "1"})
    n.spawn()
    rc = n.wait_exit(10)
    assert rc not in (None, 0), "ctagentd started with an unknown config key\n" + n.log_tail()
    assert not os.path.exists(n.ready_path)


def test_plain_listener_refuses_non_loopback(nodes):
    n = nodes.new(host="127.0.0.11", plain="0.0.0.0:0")
    n.spawn()
    deadline = time.monotonic() + 10
    while n.proc.poll() is None and not os.path.exists(n.ready_path) \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not os.path.exists(n.ready_path), (
        "a plain listener on 0.0.0.0 was accepted without plain_open = yes\n" + n.log_tail())
    rc = n.wait_exit(10)
    assert rc not in (None, 0), "ctagentd should refuse to start (exit != 0), got %s\n%s" % (
        rc, n.log_tail())


def test_tls_certificate_generated(nodes):
    n = nodes.start(host="127.0.0.11")
    crt = os.path.join(n.state_dir, "tls", "server.crt")
    key = os.path.join(n.state_dir, "tls", "server.key")
    assert os.path.isfile(crt), "no %s" % crt
    assert os.path.isfile(key), "no %s" % key
    mode = stat.S_IMODE(os.stat(key).st_mode)
    assert mode == 0o600, "server.key mode is %o, want 600" % mode
    with open(crt) as f:
        pem = f.read()
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", pem, re.S)
    assert m, "server.crt is not PEM"
    file_fp = H.fingerprint_of(ssl.PEM_cert_to_DER_cert(m.group(0)))
    with n.client(tls=True) as c:
        seen = c.fingerprint
    assert seen == file_fp, "the served certificate is not tls/server.crt"
    logged = n.logged_fingerprint()
    assert logged, "no 'TLS certificate fingerprint SHA256:...' line in the log\n" + n.log_tail()
    assert logged == seen, "logged fingerprint %s != served %s" % (logged, seen)


@pytest.mark.root
def test_restart_keeps_certificate_and_eid(nodes, users):
    n = nodes.start(host="127.0.0.11")
    with n.client(tls=True) as c:
        fp1 = c.fingerprint
        greet_eid1 = c.name.split("-", 1)[1]
        c.login_ok(users.admin, users.admin_pw)
        eid1 = c.get_eid()
    assert eid1 == greet_eid1, "greeting target %s does not carry the node eid %s" % (c.name, eid1)
    assert n.stop() == 0
    n.start()
    with n.client(tls=True) as c:
        fp2 = c.fingerprint
        c.login_ok(users.admin, users.admin_pw)
        eid2 = c.get_eid()
    assert fp2 == fp1, "certificate changed across a restart"
    assert eid2 == eid1, "node eid changed across a restart"
    assert n.logged_fingerprint() == fp1


def test_two_nodes_have_different_identities(node_a, node_b):
    with node_a.client() as a, node_b.client() as b:
        assert a.fingerprint != b.fingerprint
        assert a.name.split("-", 1)[1] != b.name.split("-", 1)[1], "same eid on two nodes"
