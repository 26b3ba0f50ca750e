#!/usr/bin/env python3
"""Drive real SSH and Telnet login attempts against a running Cowrie.

Run with the Python of the virtualenv that holds paramiko (`.ci/run` makes
it). Every connection is bound to one of the given source addresses (they
must be local addresses of this host, e.g. 127.0.0.2, or addresses put on
`lo` in a private network namespace), so Cowrie logs them as different
attackers. Failed SSH logins cost about a second each in Cowrie, hence the
worker pool.

The first wave gives every source one SSH and one Telnet attempt, so that all
the distinct addresses show up early; later waves add more attempts. A
summary goes to stdout as one JSON object. The exit code is 1 when an attempt
broke (connection error, timeout, unexpected answer) or did not end as the
user database says it should, or when the whole run exceeded --deadline.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

import paramiko

# (username, password, whether tests/cowrie/cowrie_instance.py's userdb lets
# it in)
CREDENTIALS = [
    ("root", "hunter2", True),
    ("root", "root", False),
    ("admin", "admin", True),
    ("guest", "guest", False),
    ("root", "123456", False),
    ("ubnt", "ubnt", False),
    ("root", "Passw0rd!", True),
    ("admin", "1234", False),
]

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240


def connect(source: str, host: str, port: int, timeout: float) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.bind((source, 0))
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def ssh_attempt(source, host, port, user, password, timeout) -> bool:
    """One password login; True if Cowrie let it in."""
    sock = connect(source, host, port, timeout)
    transport = paramiko.Transport(sock)
    transport.banner_timeout = timeout
    transport.auth_timeout = timeout
    try:
        transport.start_client(timeout=timeout)
        try:
            transport.auth_password(user, password)
        except paramiko.AuthenticationException:
            return False
        return transport.is_authenticated()
    finally:
        transport.close()
        sock.close()


class TelnetClient:
    """Just enough Telnet: refuses every option, collects the text."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.text = bytearray()
        self._pending = bytearray()

    def _feed(self, data: bytes) -> None:
        buf = self._pending + data
        self._pending = bytearray()
        i = 0
        while i < len(buf):
            b = buf[i]
            if b != IAC:
                self.text.append(b)
                i += 1
                continue
            if i + 1 >= len(buf):
                self._pending = buf[i:]
                return
            cmd = buf[i + 1]
            if cmd in (DO, DONT, WILL, WONT):
                if i + 2 >= len(buf):
                    self._pending = buf[i:]
                    return
                opt = buf[i + 2]
                if cmd == DO:
                    self.sock.sendall(bytes([IAC, WONT, opt]))
                elif cmd == WILL:
                    self.sock.sendall(bytes([IAC, DONT, opt]))
                i += 3
            elif cmd == SB:
                end = buf.find(bytes([IAC, SE]), i + 2)
                if end < 0:
                    self._pending = buf[i:]
                    return
                i = end + 2
            elif cmd == IAC:
                self.text.append(IAC)
                i += 2
            else:
                i += 2

    def read_until(self, *markers: bytes) -> bytes:
        """Reads until one of markers appears; returns the text so far."""
        while not any(m in self.text for m in markers):
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError(
                    f"telnet: connection closed waiting for {markers!r}; got {bytes(self.text)!r}"
                )
            self._feed(data)
        out = bytes(self.text)
        self.text.clear()
        return out


def telnet_attempt(source, host, port, user, password, timeout) -> bool:
    """One login at the login:/Password: prompts; True if it got a shell."""
    sock = connect(source, host, port, timeout)
    try:
        t = TelnetClient(sock)
        t.read_until(b"login: ")
        sock.sendall(user.encode() + b"\r\n")
        t.read_until(b"Password: ")
        sock.sendall(password.encode() + b"\r\n")
        answer = t.read_until(b"Login incorrect", b"# ", b"$ ")
        return b"Login incorrect" not in answer
    finally:
        sock.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="Cowrie's IPv4 address")
    p.add_argument("--host6", default="::1", help="Cowrie's IPv6 address")
    p.add_argument("--ssh-port", type=int, required=True)
    p.add_argument("--telnet-port", type=int, required=True)
    p.add_argument(
        "--sources",
        required=True,
        help="comma-separated source addresses (IPv6 ones connect to --host6)",
    )
    p.add_argument("--waves", type=int, default=2, help="waves of attempts (>= 1)")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--timeout", type=float, default=20, help="per connection")
    p.add_argument("--deadline", type=float, default=90, help="whole run")
    args = p.parse_args()
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)

    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    # Wave 1: one SSH and one Telnet attempt per source (all addresses early);
    # every later wave: one more SSH attempt per source, and for every other
    # source one more Telnet attempt.
    plan = []
    for wave in range(args.waves):
        for i, src in enumerate(sources):
            protos = ["ssh", "telnet"] if wave == 0 else ["ssh"]
            if wave > 0 and i % 2 == wave % 2:
                protos.append("telnet")
            for j, proto in enumerate(protos):
                cred = CREDENTIALS[(i + 3 * wave + j) % len(CREDENTIALS)]
                plan.append((src, proto, cred))

    started = time.monotonic()
    deadline = started + args.deadline
    lock = threading.Lock()
    results = []
    problems = []

    def attempt(src, proto, cred):
        user, password, expect = cred
        if time.monotonic() > deadline:
            raise TimeoutError("run deadline passed before this attempt")
        host = args.host6 if ":" in src else args.host
        port = args.ssh_port if proto == "ssh" else args.telnet_port
        fn = ssh_attempt if proto == "ssh" else telnet_attempt
        t0 = time.monotonic()
        ok = fn(src, host, port, user, password, args.timeout)
        return {
            "source": src,
            "protocol": proto,
            "username": user,
            "success": ok,
            "expected": expect,
            "seconds": round(time.monotonic() - t0, 3),
        }

    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        futures = {pool.submit(attempt, *a): a for a in plan}
        for fut in as_completed(futures):
            src, proto, (user, _, _) = futures[fut]
            try:
                r = fut.result()
            except Exception as e:  # noqa: BLE001 - reported, not raised
                with lock:
                    problems.append(f"{proto} {user}@{src}: {type(e).__name__}: {e}")
                continue
            with lock:
                results.append(r)
                if r["success"] != r["expected"]:
                    problems.append(
                        f"{proto} {user}@{src}: login "
                        f"{'succeeded' if r['success'] else 'failed'}, expected the opposite"
                    )
    elapsed = time.monotonic() - started
    if elapsed > args.deadline:
        problems.append(f"the run took {elapsed:.1f}s, over its {args.deadline}s deadline")

    summary = {
        "attempts": len(plan),
        "completed": len(results),
        "ssh": sum(r["protocol"] == "ssh" for r in results),
        "telnet": sum(r["protocol"] == "telnet" for r in results),
        "succeeded": sum(r["success"] for r in results),
        "failed": sum(not r["success"] for r in results),
        "sources": sorted({r["source"] for r in results}),
        "seconds": round(elapsed, 2),
        "slowest_attempt": max((r["seconds"] for r in results), default=0),
        "problems": problems,
    }
    print(json.dumps(summary))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
