"""Many clients at once, frame size limits, idle timeouts."""

import os
import socket
import threading
import time

import pytest

import ctahelpers as H
from ctahelpers import expect_error, expect_ok

TLS_AND_PLAIN = pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])


@pytest.mark.root
def test_200_concurrent_clients(node_a, users):
    total, logins = 200, 20
    barrier = threading.Barrier(total, timeout=60)
    errors = []
    eids = []
    lock = threading.Lock()

    def worker(i):
        try:
            with node_a.client(tls=(i % 2 == 0), timeout=60) as c:
                barrier.wait()
                if i < logins:
                    c.login_ok(users.admin, users.admin_pw)
                    eid = c.get_eid()
                    with lock:
                        eids.append(eid)
                else:
                    r = c.call(H.system_call("<get_realm/>", id="r%d" % i, cookie="c%d" % i))
                    expect_ok(r, "get_realm #%d" % i)
                    assert r.cookie == "c%d" % i and r.target == c.name, r.text
                    assert r.find("system", "realms") is not None, r.text
                r = c.call(H.system_call("<ping/>", id="p%d" % i))
                expect_ok(r, "ping #%d" % i)
        except BaseException as e:  # noqa: B902 - report every failure
            with lock:
                errors.append("client %d: %s: %s" % (i, type(e).__name__, e))

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(total)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.1, 90 - (time.monotonic() - t0)))
    took = time.monotonic() - t0
    stuck = sum(t.is_alive() for t in threads)
    assert stuck == 0, "%d clients still waiting after %.0f s" % (stuck, took)
    assert not errors, "%d of %d clients failed:\n%s" % (len(errors), total,
                                                        "\n".join(errors[:20]))
    assert len(eids) == logins and len(set(eids)) == 1, eids
    assert took < 60, "200 clients took %.1f s" % took
    node_a.check_alive()


def _send_oversized(c, size):
    """Write size bytes without a NUL; the daemon may close while we write."""
    data = b'<packet version="4.0.0" id="big"><cookie>'
    data += b"A" * (size - len(data))
    try:
        c.send_raw(data)
    except (BrokenPipeError, ConnectionResetError, OSError):
        pass


@TLS_AND_PLAIN
def test_oversized_frame_before_login(node_a, xsd, tls):
    with node_a.client(tls=not tls) as other, node_a.client(tls=tls) as c:
        expect_ok(other.ping(), "other client before")
        _send_oversized(c, 65536 + 1)
        try:
            r = c.recv(timeout=10)
        except H.ConnectionClosed as e:
            pytest.fail("connection closed without the 201 error packet (%s)" % e)
        expect_error(r, H.E_FRAME_TOO_LARGE, "frame over 64 KiB before login")
        assert r.origin == "system", r.text
        H.assert_valid(r, "frame too large error")
        assert c.wait_closed(5), "connection not closed after an over-limit frame"
        # The other client is unaffected.
        expect_ok(other.ping(), "other client after")
        expect_ok(other.call(H.system_call("<get_realm/>", id="gr")), "other get_realm")
    node_a.check_alive()


def test_oversized_frame_custom_limit(nodes):
    n = nodes.start(host="127.0.0.11", config={"frame_max_prelogin": 4096})
    with n.client(tls=False) as c:
        r = c.call(H.system_call("<get_realm/>", id="ok", cookie="y" * 3000))
        expect_ok(r, "3 kB frame under a 4 KiB limit")
        _send_oversized(c, 4097)
        expect_error(c.recv(), H.E_FRAME_TOO_LARGE, "frame over frame_max_prelogin = 4096")
        assert c.wait_closed(5)


@pytest.fixture
def idle_node(nodes):
    return nodes.start(host="127.0.0.12",
                       config={"idle_timeout_prelogin": 2, "idle_timeout": 3})


@TLS_AND_PLAIN
def test_idle_timeout_before_login(idle_node, xsd, tls):
    n = idle_node
    # (before the idle client connects: its 2 s start at its greeting, not when the busy
    # client's handshake is done, which can take a while under ASan)
    t_idle = time.monotonic()
    with n.client(tls=tls) as idle, n.client(tls=not tls) as busy:
        t0 = time.monotonic()
        # The busy client keeps talking for longer than the idle timeout.
        while time.monotonic() - t0 < 3.0:
            expect_ok(busy.ping(), "busy client ping")
            time.sleep(0.5)
        r = idle.recv(timeout=8)
        took = time.monotonic() - t_idle
        expect_error(r, H.E_IDLE, "idle connection")
        assert r.origin == "system", r.text
        H.assert_valid(r, "idle error packet")
        assert 1.5 <= took <= 7, "idle error after %.1f s (timeout 2 s)" % took
        assert idle.wait_closed(3), "idle connection not closed"
        expect_ok(busy.ping(), "busy client after the other's idle timeout")


@pytest.mark.root
def test_idle_timeout_after_login(idle_node, users):
    with idle_node.client() as c:
        c.login_ok(users.admin, users.admin_pw)
        t0 = time.monotonic()
        r = c.recv(timeout=10)
        took = time.monotonic() - t0
        expect_error(r, H.E_IDLE, "idle logged-in connection")
        assert 2.5 <= took <= 8, "idle error after %.1f s (idle_timeout 3 s)" % took
        assert c.wait_closed(3)


def test_partial_frame_counts_as_idle(idle_node):
    """A client that sends half a packet and stops is still idle."""
    with idle_node.client(tls=False) as c:
        c.send_raw(b'<packet version="4.0.0" id="half"><data><sys')
        r = c.recv(timeout=8)
        expect_error(r, H.E_IDLE, "half a frame then silence")
        assert c.wait_closed(3)


def test_many_connections_then_close_all(node_a):
    """Open and drop 300 connections without reading; the daemon keeps serving."""
    socks = []
    for _ in range(300):
        s = socket.create_connection(node_a.plain_addr, timeout=5)
        socks.append(s)
    for s in socks:
        s.close()
    with node_a.client() as c:
        expect_ok(c.ping())
    node_a.check_alive()
    # fd leak check: the daemon's open descriptors go back down.
    fd_dir = "/proc/%d/fd" % node_a.proc.pid
    if os.path.isdir(fd_dir):
        def few():
            return len(os.listdir(fd_dir)) < 100
        assert H.wait_for(few, 5), "ctagentd holds %d fds after the clients left" % len(
            os.listdir(fd_dir))


def test_max_connections_per_listener(nodes):
    n = nodes.start(host="127.0.0.11", config={"max_connections": 3})
    held = [n.client(tls=False) for _ in range(3)]
    try:
        # The 4th plain connection is accepted and closed (an error packet first is fine).
        extra = H.Client(n.plain_addr, tls=False, greeting=False)
        try:
            try:
                r = extra.recv(timeout=5)
                assert r.error is not None, "4th connection got a greeting:\n" + r.text
            except H.ConnectionClosed:
                pass
            else:
                assert extra.wait_closed(5), "4th connection not closed"
        finally:
            extra.close()
        # The TLS listener has its own budget.
        with n.client(tls=True) as t:
            expect_ok(t.ping(), "TLS while plain is full")
        # A freed slot can be used again.
        held.pop().close()

        def reconnect():
            try:
                with n.client(tls=False, timeout=2) as c:
                    return c.ping().error is None
            except (H.ConnectionClosed, OSError, AssertionError):
                return False
        assert H.wait_for(reconnect, 5, interval=0.1), "slot not freed after a client left"
    finally:
        for c in held:
            c.close()


@pytest.mark.root
def test_frame_limit_after_login(nodes, users):
    n = nodes.start(host="127.0.0.11", config={"frame_max_prelogin": 1024, "frame_max": 8192})
    with n.client(tls=False) as c:
        c.login_ok(users.admin, users.admin_pw)
        # Over the pre-login limit but under frame_max: fine once logged in.
        r = c.call(H.system_call("<ping/>", id="mid", cookie="z" * 6000))
        expect_ok(r, "6 kB frame after login (frame_max 8192)")
        _send_oversized(c, 8193)
        expect_error(c.recv(), H.E_FRAME_TOO_LARGE, "frame over frame_max after login")
        assert c.wait_closed(5)
