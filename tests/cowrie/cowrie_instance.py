#!/usr/bin/env python3
"""Prepare, start and stop a real Cowrie instance for tjfwd's end-to-end test.

Run as root with the Python of the virtualenv that holds Cowrie (`.ci/run`
makes it); Cowrie itself runs as an unprivileged user through `runuser`,
because it refuses to run as root. Everything listens on loopback only.

    prepare --dir DIR --user USER --venv VENV --api-url URL --token TOKEN
        Turns DIR (which must exist, e.g. a fresh temporary directory) into a
        Cowrie state directory owned by USER: `cowrie init` (etc/, var/log/
        cowrie, var/lib/cowrie, var/run), the bundled defaults kept as
        etc/cowrie.cfg.dist, a small etc/cowrie.cfg overlay (SSH and Telnet
        on free loopback ports, [output_threatjammer] disabled but filled
        in, so tjfwd's --cowrie-config can read it) and an etc/userdb.txt
        under which some logins fail and some succeed. Prints a JSON object
        with the ports and paths.

    start --dir DIR --user USER --venv VENV [--timeout S]
        `cowrie start` as USER (twistd daemonizes, PID in var/run/cowrie.pid),
        then waits until every port chosen by prepare (kept in
        DIR/tjfwd-instance.json) accepts connections. Prints
        {"pid": N}. On failure it stops what it started, prints the end of
        cowrie.log and exits 1.

    stop --dir DIR [--timeout S]
        SIGTERM to the PID of var/run/cowrie.pid, waits for it to exit,
        SIGKILL after the timeout. Succeeds when nothing runs.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PID_FILE = Path("var/run/cowrie.pid")
COWRIE_LOG = Path("var/log/cowrie/cowrie.log")
JSON_LOG = Path("var/log/cowrie/cowrie.json")
INFO_FILE = Path("tjfwd-instance.json")  # what prepare chose, for start

# Under this user database, root logs in with any password but "root" and
# "123456", admin only with "admin", and every other user name fails.
USERDB = """\
# tjfwd end-to-end test: some logins fail, some succeed.
root:x:!root
root:x:!123456
root:x:*
admin:x:admin
"""


def runuser() -> str:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin"
    found = shutil.which("runuser", path=path)
    if found is None:
        raise SystemExit("cowrie_instance: runuser (util-linux) is missing")
    return found


def free_port(host: str, family: int) -> int:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_free_on(host: str, family: int, port: int) -> bool:
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, port))
        return True
    except OSError:
        return False


def ipv6_loopback_usable() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def pick_ports(ipv6: bool) -> tuple[int, int]:
    """Two distinct ports free on 127.0.0.1 (and on ::1 with ipv6)."""
    chosen: list[int] = []
    for _ in range(200):
        p = free_port("127.0.0.1", socket.AF_INET)
        if p in chosen:
            continue
        if ipv6 and not port_free_on("::1", socket.AF_INET6, p):
            continue
        chosen.append(p)
        if len(chosen) == 2:
            return chosen[0], chosen[1]
    raise SystemExit("cowrie_instance: found no free loopback ports")


def user_env(d: Path, venv: Path) -> list[str]:
    """A clean environment for Cowrie (no stray COWRIE_* overrides)."""
    return [
        "/usr/bin/env",
        "-i",
        f"HOME={d}",
        f"PATH={venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "LANG=C.UTF-8",
        "PYTHONDONTWRITEBYTECODE=1",
    ]


def as_user(user: str, d: Path, venv: Path, *cmd: str, timeout: float = 60) -> None:
    full = [runuser(), "-u", user, "--", *user_env(d, venv), *cmd]
    r = subprocess.run(
        full,
        cwd=d,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if r.returncode != 0:
        raise SystemExit(
            f"cowrie_instance: {' '.join(cmd)} as {user} failed ({r.returncode}):\n"
            f"{r.stdout}{r.stderr}"
        )


def chown_tree(d: Path, uid: int, gid: int) -> None:
    os.chown(d, uid, gid)
    for root, dirs, files in os.walk(d):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


def prepare(args: argparse.Namespace) -> None:
    d = Path(args.dir).resolve()
    venv = Path(args.venv).resolve()
    pw = pwd.getpwnam(args.user)
    if not d.is_dir():
        raise SystemExit(f"cowrie_instance: {d} is not a directory")
    if not (venv / "bin" / "cowrie").exists():
        raise SystemExit(f"cowrie_instance: no Cowrie in {venv} (run .ci/run)")
    chown_tree(d, pw.pw_uid, pw.pw_gid)
    os.chmod(d, 0o755)  # tjfwd (root) and the test read the logs
    # The directory and the venv must be reachable by the Cowrie user.
    r = subprocess.run(
        [runuser(), "-u", args.user, "--", "test", "-w", str(d), "-a", "-x",
         str(venv / "bin" / "python")],
        stdin=subprocess.DEVNULL,
    )
    if r.returncode != 0:
        raise SystemExit(
            f"cowrie_instance: {args.user} cannot use {d} or {venv}: "
            "every parent directory must be traversable by that user"
        )

    as_user(args.user, d, venv, "cowrie", "init")
    etc = d / "etc"
    # Keep the full default config where an operator's checkout has it, and
    # make etc/cowrie.cfg a small overlay: Cowrie reads its bundled defaults
    # first, then etc/cowrie.cfg (last wins).
    (etc / "cowrie.cfg").rename(etc / "cowrie.cfg.dist")

    ipv6 = args.ipv6 and ipv6_loopback_usable()
    ssh_port, telnet_port = pick_ports(ipv6)

    def endpoints(port: int, mapped: bool) -> str:
        # SSH takes IPv4 on an IPv4 socket; Telnet on an IPv6 socket bound
        # to ::ffff:127.0.0.1, so Cowrie logs its IPv4 peers as
        # ::ffff:a.b.c.d, as it does in the field on a dual-stack listener:
        # the same attacker then appears in both forms.
        if mapped:
            eps = [f"tcp6:{port}:interface=\\:\\:ffff\\:127.0.0.1"]
        else:
            eps = [f"tcp:{port}:interface=127.0.0.1"]
        if ipv6:
            eps.append(f"tcp6:{port}:interface=\\:\\:1")
        return " ".join(eps)

    overlay = f"""\
# Written by tjfwd's tests/cowrie/cowrie_instance.py: loopback only.
[honeypot]
hostname = tjfwd-e2e
log_path = var/log/cowrie
state_path = var/lib/cowrie
etc_path = etc
internet_facing_ip = 127.0.0.1
internet_facing_ipv6 = ::1
out_addr = 127.0.0.1
authentication_timeout = 30
idle_timeout = 30

[ssh]
enabled = true
listen_endpoints = {endpoints(ssh_port, False)}

[telnet]
enabled = true
listen_endpoints = {endpoints(telnet_port, True)}

[output_jsonlog]
enabled = true
logfile = ${{honeypot:log_path}}/cowrie.json

[output_threatjammer]
enabled = false
api_url = {args.api_url}
bearer_token = {args.token}
track_login = true
track_session = false
ttl = 86400
category = ABUSE
tags = COWRIE,LOGIN
"""
    (etc / "cowrie.cfg").write_text(overlay)
    (etc / "userdb.txt").write_text(USERDB)
    for f in ("cowrie.cfg", "userdb.txt"):
        os.chown(etc / f, pw.pw_uid, pw.pw_gid)
        os.chmod(etc / f, 0o600 if f == "cowrie.cfg" else 0o644)

    info = {
        "dir": str(d),
        "ssh_port": ssh_port,
        "telnet_port": telnet_port,
        "ipv6": ipv6,
        "cowrie_cfg": str(etc / "cowrie.cfg"),
        "json_log": str(d / JSON_LOG),
        "cowrie_log": str(d / COWRIE_LOG),
    }
    (d / INFO_FILE).write_text(json.dumps(info))
    print(json.dumps(info))


def read_pid(d: Path) -> int | None:
    try:
        return int((d / PID_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie nobody reaps counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def is_cowrie(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return b"twistd" in cmdline or b"cowrie" in cmdline


def accepts(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect((host, port))
        return True
    except OSError:
        return False


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return f"({path} does not exist)"


def stop_pid(d: Path, timeout: float) -> str:
    pid = read_pid(d)
    if pid is None or not alive(pid):
        return "not running"
    if not is_cowrie(pid):
        return f"PID {pid} is not Cowrie; left alone"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return f"stopped PID {pid}"
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return f"stopped PID {pid}"
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return f"killed PID {pid} after {timeout}s"


def start(args: argparse.Namespace) -> None:
    d = Path(args.dir).resolve()
    venv = Path(args.venv).resolve()
    cfg = json.loads((d / INFO_FILE).read_text())
    pid = read_pid(d)
    if pid is not None and alive(pid):
        raise SystemExit(f"cowrie_instance: Cowrie already runs in {d} (PID {pid})")
    t0 = time.monotonic()
    as_user(args.user, d, venv, "cowrie", "start")
    endpoints: list[tuple[str, int]] = []
    for key in ("ssh_port", "telnet_port"):
        endpoints.append(("127.0.0.1", cfg[key]))
        if cfg["ipv6"]:
            endpoints.append(("::1", cfg[key]))
    deadline = t0 + args.timeout
    pid = None
    while time.monotonic() < deadline:
        pid = read_pid(d)
        if pid is not None and not alive(pid):
            break  # it died
        if pid is not None and all(accepts(h, p) for h, p in endpoints):
            print(json.dumps({"pid": pid, "seconds": round(time.monotonic() - t0, 2)}))
            return
        time.sleep(0.1)
    what = stop_pid(d, 10)
    raise SystemExit(
        f"cowrie_instance: Cowrie did not come up within {args.timeout}s "
        f"(PID {pid}, {what}); end of {COWRIE_LOG}:\n{tail(d / COWRIE_LOG)}"
    )


def stop(args: argparse.Namespace) -> None:
    d = Path(args.dir).resolve()
    print(json.dumps({"result": stop_pid(d, args.timeout)}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prepare")
    pp.add_argument("--dir", required=True)
    pp.add_argument("--user", required=True)
    pp.add_argument("--venv", required=True)
    pp.add_argument("--api-url", required=True)
    pp.add_argument("--token", required=True)
    pp.add_argument("--ipv6", action="store_true", help="also listen on ::1")
    ps = sub.add_parser("start")
    ps.add_argument("--dir", required=True)
    ps.add_argument("--user", required=True)
    ps.add_argument("--venv", required=True)
    ps.add_argument("--timeout", type=float, default=60)
    pq = sub.add_parser("stop")
    pq.add_argument("--dir", required=True)
    pq.add_argument("--timeout", type=float, default=15)
    args = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("cowrie_instance: must run as root (Cowrie runs via runuser)")
    runuser()
    {"prepare": prepare, "start": start, "stop": stop}[args.cmd](args)


if __name__ == "__main__":
    main()
