"""Helpers for the ctagentd integration tests: a daemon runner (Node), a protocol client
(Client), packet builders, reply parsing and XSD validation.

Python 3 standard library only. Imported by conftest.py and the test modules (pytest puts this
directory on sys.path because it has no __init__.py).
"""

import base64
import ctypes
import hashlib
import itertools
import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT_ROOT = os.path.dirname(os.path.dirname(HERE))

REALM_SYSTEM = "00000000-0000-0000-0000-000000000000"
REALM_ONETIME = "00000000-0000-0000-0000-000000000002"
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                     r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

# Stable error codes (src/util/errcodes.h).
E_PROTO = 200
E_FRAME_TOO_LARGE = 201
E_UNKNOWN_OPERATOR = 202
E_UNKNOWN_CALL = 203
E_BAD_PARAM = 204
E_IDLE = 205
E_BAD_BASE64 = 206
E_NOT_LOGGED_IN = 300
E_AUTH_FAILED = 301
E_ACCESS_DENIED = 302
E_UNKNOWN_REALM = 304

DEFAULT_TIMEOUT = 10.0


def _resolve(path):
    if not path:
        return None
    return os.path.abspath(path)


def _built(*candidates):
    for rel in candidates:
        path = os.path.join(PROJECT_ROOT, rel)
        if os.access(path, os.X_OK):
            return path
    return os.path.join(PROJECT_ROOT, candidates[0])


def ctagentd_path():
    """The daemon under test: $CTAGENTD, else the one in the project's build/."""
    return _resolve(os.environ.get("CTAGENTD")) or _built("build/src/daemon/ctagentd",
                                                          "build/ctagentd")


def ctagent_path():
    """The CLI under test: $CTAGENT, else the one in the project's build/."""
    return _resolve(os.environ.get("CTAGENT")) or _built("build/src/cli/ctagent",
                                                         "build/ctagent")


def xsd_all_path():
    """$XSD_ALL, else ../shared/xsd/all.xsd beside the project."""
    return _resolve(os.environ.get("XSD_ALL")) or os.path.join(
        os.path.dirname(PROJECT_ROOT), "shared", "xsd", "all.xsd")


def seed_dir():
    return os.path.normpath(os.path.join(os.path.dirname(xsd_all_path()), "..", "seed"))


def b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def unb64(s):
    return base64.b64decode("".join((s or "").split())).decode()


# ---------------------------------------------------------------------------------------------
# Source addresses. Failed logins are slowed down per client address, so a test that logs in
# wrongly uses its own loopback source address and cannot slow down the others.

_src_counter = itertools.count(1)


def fresh_src_addr():
    n = next(_src_counter)
    return "127.1.%d.%d" % (n // 250, n % 250 + 1)


# ---------------------------------------------------------------------------------------------
# Packets

_id_counter = itertools.count(1)


def new_id(prefix="t"):
    return "%s%d" % (prefix, next(_id_counter))


def packet(body, *, id=None, target=None, cookie=None, attrs=None, extra_header=""):
    """A request packet without namespaces, as most clients in the wild send it.
    body is the XML inside <data>; target None = a system call (no <target>)."""
    a = {"version": "4.0.0"}
    if id is not None:
        a["id"] = id
    if attrs:
        a.update(attrs)
    attr_s = "".join(' %s="%s"' % (k, v) for k, v in a.items())
    head = ""
    if cookie is not None:
        head += "<cookie>%s</cookie>" % cookie
    if target is not None:
        head += "<target>%s</target>" % target
    head += extra_header
    return "<packet%s>%s<data>%s</data></packet>" % (attr_s, head, body)


def system_call(call_xml, **kw):
    return packet("<system>%s</system>" % call_xml, **kw)


def login_packet(user, password, realm=REALM_SYSTEM, *, id=None, raw_name=None):
    """system/login; user and password are plain text (base64-encoded here), raw_name is an
    already encoded name (a one-time pass's <name>)."""
    name = raw_name if raw_name is not None else (b64(user) if user is not None else None)
    inner = ""
    if name is not None:
        inner += "<name>%s</name>" % name
    inner += "<realm>%s</realm>" % realm
    if password is not None:
        inner += "<password>%s</password>" % b64(password)
    return system_call("<login>%s</login>" % inner, id=id)


def local(tag):
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else tag


class Reply:
    """A parsed packet from the daemon. Lookups use local names (namespaces are ignored)."""

    def __init__(self, raw):
        self.raw = raw
        self.text = raw.decode("utf-8", "replace")
        try:
            self.root = ET.fromstring(raw)
        except ET.ParseError as e:
            raise AssertionError("daemon sent a packet that is not XML (%s): %r"
                                 % (e, raw[:2000]))

    def __repr__(self):
        return "Reply(%s)" % self.text

    @property
    def id(self):
        return self.root.get("id")

    @property
    def is_progress(self):
        t = self.root.get("type")
        try:
            return t is not None and (int(t) & 1) == 1
        except ValueError:
            return False

    def child(self, name, parent=None):
        p = self.root if parent is None else parent
        for c in p:
            if local(c.tag) == name:
                return c
        return None

    def children(self, name, parent=None):
        p = self.root if parent is None else parent
        return [c for c in p if local(c.tag) == name]

    def header(self, name):
        c = self.child(name)
        return None if c is None else (c.text or "").strip()

    @property
    def origin(self):
        return self.header("origin")

    @property
    def target(self):
        return self.header("target")

    @property
    def cookie(self):
        return self.header("cookie")

    @property
    def director(self):
        dst = self.child("dst")
        if dst is None:
            return None
        d = self.child("director", dst)
        return None if d is None else (d.text or "").strip()

    @property
    def data(self):
        return self.child("data")

    @property
    def operator(self):
        """The first element inside <data> (the operator element, or <progress>)."""
        d = self.data
        if d is None or len(d) == 0:
            return None
        return d[0]

    def find(self, *path):
        """find("system", "realms") → the element data/system/realms, or None."""
        e = self.data
        for name in path:
            if e is None:
                return None
            e = self.child(name, e)
        return e

    def findtext(self, *path):
        e = self.find(*path)
        return None if e is None else (e.text or "").strip()

    def iter(self, name):
        return [e for e in self.root.iter() if local(e.tag) == name]

    @property
    def error(self):
        """(code, message) of the first <error> inside the operator element, or None."""
        op = self.operator
        if op is None:
            return None
        err = self.child("error", op)
        if err is None:
            return None
        code = self.child("code", err)
        msg = self.child("message", err)
        try:
            c = int((code.text or "").strip()) if code is not None else None
        except ValueError:
            c = (code.text or "").strip()
        return (c, None if msg is None else (msg.text or ""))

    @property
    def code(self):
        e = self.error
        return None if e is None else e[0]

    @property
    def is_ok(self):
        op = self.operator
        return op is not None and self.child("ok", op) is not None and self.error is None


def expect_ok(r, what=""):
    assert r.error is None, "%s: expected success, got error %r\n%s" % (what, r.error, r.text)
    return r


def expect_error(r, code, what=""):
    assert r.error is not None, "%s: expected error %s, got\n%s" % (what, code, r.text)
    assert r.code == code, "%s: expected error %s, got %r\n%s" % (what, code, r.error, r.text)
    return r


# ---------------------------------------------------------------------------------------------
# XSD validation

def xsd_validate(raw, xsd=None):
    """Validate one packet (bytes without the NUL) with xmllint against all.xsd.
    Returns (ok, xmllint's output minus the known harmless warnings)."""
    xsd = xsd or xsd_all_path()
    if isinstance(raw, Reply):
        raw = raw.raw
    with tempfile.NamedTemporaryFile(prefix="cta-pkt-", suffix=".xml") as f:
        f.write(raw)
        f.flush()
        p = subprocess.run(["xmllint", "--noout", "--schema", xsd, f.name],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    lines = [l for l in (p.stdout + p.stderr).decode("utf-8", "replace").splitlines()
             if "Skipping the import" not in l and "failed to load external entity" not in l]
    return p.returncode == 0, "\n".join(lines)


def assert_valid(reply, what="reply"):
    ok, out = xsd_validate(reply)
    raw = reply.raw if isinstance(reply, Reply) else reply
    assert ok, "%s does not validate against the XSDs:\n%s\n--- packet ---\n%s" % (
        what, out, raw.decode("utf-8", "replace"))


# ---------------------------------------------------------------------------------------------
# The client

class ConnectionClosed(Exception):
    pass


def fingerprint_of(der):
    h = hashlib.sha256(der).hexdigest().upper()
    return ":".join(h[i:i + 2] for i in range(0, len(h), 2))


class Client:
    """One connection to ctagentd: TLS without verification (the peer certificate's SHA-256
    fingerprint is kept in .fingerprint), or plain TCP. Reads the greeting on connect."""

    def __init__(self, addr, *, tls=True, src=None, timeout=DEFAULT_TIMEOUT, greeting=True,
                 cert=None):
        """cert: (certificate file, key file) to present as a TLS client certificate."""
        self.addr = addr
        self.tls = tls
        self.timeout = timeout
        self.buf = b""
        self.closed = False
        self.fingerprint = None
        self.cert_der = None
        self.last_progress = []
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.settimeout(timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if src:
                raw.bind((src, 0))
            raw.connect(tuple(addr))
            if tls:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                if cert:
                    ctx.load_cert_chain(cert[0], cert[1])
                self.sock = ctx.wrap_socket(raw)
                self.cert_der = self.sock.getpeercert(binary_form=True)
                if self.cert_der:
                    self.fingerprint = fingerprint_of(self.cert_der)
            else:
                self.sock = raw
        except BaseException:
            raw.close()
            raise
        self.greeting = self.recv() if greeting else None
        self.name = self.greeting.target if self.greeting is not None else None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def close(self):
        if not self.closed:
            self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    def send_raw(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def send(self, xml):
        """Send one packet followed by its NUL."""
        if isinstance(xml, str):
            xml = xml.encode()
        self.send_raw(xml + b"\0")

    def _read_some(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("no packet from the daemon within the timeout")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except ssl.SSLZeroReturnError:
            chunk = b""
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError) as e:
            self.closed = True
            raise ConnectionClosed("connection reset: %s" % e)
        if not chunk:
            self.closed = True
            raise ConnectionClosed("connection closed by the daemon")
        return chunk

    def recv_frame(self, timeout=None):
        """The next non-empty NUL-terminated frame, as bytes without the NUL."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            i = self.buf.find(b"\0")
            if i >= 0:
                frame, self.buf = self.buf[:i], self.buf[i + 1:]
                if frame.strip():
                    return frame
                continue
            self.buf += self._read_some(deadline)

    def recv(self, timeout=None):
        return Reply(self.recv_frame(timeout))

    def wait_closed(self, timeout=None):
        """True if the daemon closes the connection within the timeout, False if it stays
        open and silent; another packet is a test failure."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        try:
            frame = self.recv_frame(max(0.001, deadline - time.monotonic()))
        except ConnectionClosed:
            return True
        except (socket.timeout, TimeoutError):
            return False
        raise AssertionError("expected the connection to close, got another packet: %r"
                             % frame[:500])

    def call(self, xml, id=None, timeout=None):
        """Send a request and return its final reply; progress packets (type bit 1) are kept
        in self.last_progress. id None = the request's own id attribute; a request without id
        gets the next non-progress packet."""
        if id is None:
            m = re.search(r'<(?:\w+:)?packet\b[^>]*\bid="([^"]*)"', xml)
            id = m.group(1) if m else None
        self.send(xml)
        self.last_progress = []
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            r = self.recv(max(0.001, deadline - time.monotonic()))
            if r.is_progress:
                self.last_progress.append(r)
                continue
            if id is None or r.id == id:
                return r
            raise AssertionError("reply for id %r expected, got a packet with id %r:\n%s"
                                 % (id, r.id, r.text))

    def sys(self, call_xml, timeout=None, **kw):
        kw.setdefault("id", new_id())
        return self.call(system_call(call_xml, **kw), timeout=timeout)

    def login(self, user, password, realm=REALM_SYSTEM, raw_name=None, timeout=None):
        return self.call(login_packet(user, password, realm, id=new_id("login"),
                                      raw_name=raw_name), timeout=timeout)

    def login_ok(self, user, password, realm=REALM_SYSTEM):
        return expect_ok(self.login(user, password, realm), "login as %r" % user)

    def ping(self):
        return self.sys("<ping/>")

    def get_eid(self):
        r = expect_ok(self.sys("<get_eid/>"), "get_eid")
        eid = r.findtext("system", "eid")
        assert eid, "get_eid reply without <eid>:\n%s" % r.text
        return eid


# ---------------------------------------------------------------------------------------------
# The daemon

_libc = None


def _set_pdeathsig():
    """preexec_fn: the daemon gets SIGKILL when the process that started it (pytest) dies."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL("libc.so.6", use_errno=True)
    PR_SET_PDEATHSIG = 1
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def write_config(path, settings):
    with open(path, "w") as f:
        f.write("# written by tests/integration\n")
        for k, v in (settings or {}).items():
            f.write("%s = %s\n" % (k, v))


class DaemonDied(AssertionError):
    pass


class Node:
    """One ctagentd process with its own state directory, config file, ready file and log."""

    def __init__(self, workdir, *, host="127.0.0.11", tls_port=0, plain_port=0, plain=True,
                 config=None, state_dir=None, extra_args=None, name=None):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.host = host
        self.name = name or os.path.basename(workdir)
        self.state_dir = state_dir or os.path.join(workdir, "state")
        self.config_path = os.path.join(workdir, "ctagentd.conf")
        self.ready_path = os.path.join(workdir, "ready")
        self.log_path = os.path.join(workdir, "ctagentd.log")
        self.config = dict(config or {})
        self.tls_listen = "%s:%d" % (host, tls_port)
        if plain is True:
            self.plain_listen = "%s:%d" % (host, plain_port)
        else:
            self.plain_listen = plain or "none"
        self.extra_args = list(extra_args or [])
        self.proc = None
        self.logf = None
        self.tls_addr = None
        self.plain_addr = None
        self.ready_content = None
        self.returncode = None

    def argv(self):
        return [ctagentd_path(), "--foreground", "--state-dir", self.state_dir,
                "--listen", self.tls_listen, "--plain-listen", self.plain_listen,
                "--ready-file", self.ready_path, "--config", self.config_path] + self.extra_args

    def spawn(self):
        """Start the process without waiting for it to be ready."""
        write_config(self.config_path, self.config)
        try:
            os.unlink(self.ready_path)
        except FileNotFoundError:
            pass
        self.tls_addr = self.plain_addr = self.ready_content = None
        self.returncode = None
        self.logf = open(self.log_path, "ab")
        self.logf.write(b"==== test harness: start " + " ".join(self.argv()).encode() + b"\n")
        self.logf.flush()
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=self.logf, preexec_fn=_set_pdeathsig,
                                     close_fds=True)
        return self

    def start(self, timeout=20.0):
        self.spawn()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=20.0):
        """Poll for the ready file; fail with the log if the daemon exits first."""
        deadline = time.monotonic() + timeout
        while True:
            if os.path.exists(self.ready_path):
                with open(self.ready_path) as f:
                    content = f.read()
                self.ready_content = content
                self._parse_ready(content)
                return
            rc = self.proc.poll()
            if rc is not None:
                self.returncode = rc
                raise DaemonDied("ctagentd exited with status %s before writing the ready file\n%s"
                                 % (rc, self.log_tail()))
            if time.monotonic() > deadline:
                raise AssertionError("ctagentd wrote no ready file within %.0f s\n%s"
                                     % (timeout, self.log_tail()))
            time.sleep(0.01)

    def _parse_ready(self, content):
        for line in content.splitlines():
            parts = line.split()
            if len(parts) != 2:
                continue
            host, _, port = parts[1].rpartition(":")
            if not port.isdigit():
                continue
            if parts[0] == "tls":
                self.tls_addr = (host, int(port))
            elif parts[0] == "plain":
                self.plain_addr = (host, int(port))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=150):
        lines = self.log().splitlines()
        return "---- ctagentd log (%s, last %d lines) ----\n%s\n---- end of log ----" % (
            self.name, min(n, len(lines)), "\n".join(lines[-n:]))

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Stop the daemon and return its exit status (negative = killed by that signal)."""
        if self.proc is None:
            return None
        try:
            if self.proc.poll() is None:
                try:
                    self.proc.send_signal(sig)
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
                    self.returncode = self.proc.returncode
                    raise AssertionError("ctagentd did not exit within %.0f s of %s\n%s"
                                         % (timeout, sig.name, self.log_tail()))
            self.returncode = self.proc.returncode
            return self.returncode
        finally:
            if self.logf:
                self.logf.close()
                self.logf = None

    def wait_exit(self, timeout=10.0):
        """Wait for a daemon that is expected to exit on its own; returns its exit status or
        None if it is still running after the timeout."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.returncode = rc
        if self.logf:
            self.logf.close()
            self.logf = None
        return rc

    def check_alive(self):
        if not self.alive():
            raise DaemonDied("ctagentd died (exit status %s)\n%s"
                             % (self.proc.poll() if self.proc else None, self.log_tail()))

    def client(self, tls=True, **kw):
        addr = self.tls_addr if tls else self.plain_addr
        assert addr, "node %s has no %s listener" % (self.name, "tls" if tls else "plain")
        return Client(addr, tls=tls, **kw)

    def logged_fingerprint(self):
        m = re.findall(r"TLS certificate fingerprint SHA256:([0-9A-Fa-f:]+)", self.log())
        return m[-1].upper().strip(":") if m else None


def wait_for(pred, timeout, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return pred()


def port_open(addr, timeout=0.5):
    try:
        with socket.create_connection(tuple(addr), timeout=timeout):
            return True
    except OSError:
        return False
