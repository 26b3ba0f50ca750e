#!/usr/bin/env bash
# Runs the Debian package's hardened unit under a real systemd: boots this
# machine's own system (a throw-away overlay of /, private network) in
# systemd-nspawn, installs the .deb there, points tjfwd at a Cowrie log and a
# fake Report API on loopback, starts tjfwd.service and checks that it works
# within its sandbox:
#
# - ExecStartPre= check-config passes, the service runs as user tjfwd;
# - the token arrives as the credential bearer_token (the config names none);
# - the Cowrie log is readable through ProtectHome=tmpfs + BindReadOnlyPaths=,
#   and nothing else under /home is visible;
# - every address of the sample log reaches the API, /metrics and /healthz
#   answer on [admin] listen;
# - journald got priorities from the `<N>` prefixes (the bad line's warning
#   is at priority 4);
# - `systemctl reload` (SIGHUP) reloads its configuration in the same process;
# - `systemctl stop` ends it cleanly (exit 0) with the queue flushed.
#
#   sudo packaging/test-systemd.sh FILE.deb    (packaging/build-deb.sh makes one)
#
# Needs root, systemd-nspawn (package systemd-container) and a kernel that
# allows overlayfs and namespaces; skips with a message otherwise. About 20 s.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "test-systemd.sh: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    log "not root: skipped"
    exit 0
fi
if ! command -v systemd-nspawn >/dev/null; then
    log "no systemd-nspawn (apt-get install systemd-container): skipped"
    exit 0
fi
deb="${1:?usage: test-systemd.sh FILE.deb}"
deb="$(readlink -f "$deb")"

work="$(mktemp -d /run/tjfwd-nspawn.XXXXXX)"
root="$work/root"
out="$work/out"
cleanup() {
    umount "$root" 2>/dev/null || true
    umount "$work/layer" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/layer" "$root" "$out"
mount -t tmpfs tmpfs "$work/layer"
mkdir -p "$work/layer/upper" "$work/layer/work"
if ! mount -t overlay overlay \
    -o "lowerdir=/,upperdir=$work/layer/upper,workdir=$work/layer/work" "$root"; then
    log "cannot make an overlay of /: skipped"
    exit 0
fi

# The guest: its own machine id, no tjfwd yet, the test files.
rm -f "$root/etc/machine-id"
systemd-id128 new > "$root/etc/machine-id"
if chroot "$root" dpkg-query -W tjfwd >/dev/null 2>&1; then
    chroot "$root" dpkg --purge tjfwd >/dev/null
fi
mkdir -p "$root/opt/tjfwd-test"
cp "$deb" "$root/opt/tjfwd-test/tjfwd.deb"
cp examples/sample/cowrie.json "$root/opt/tjfwd-test/cowrie.json"

cat > "$root/opt/tjfwd-test/fake_api.py" <<'EOF'
# A minimal Report API: 202 for the right bearer token, 401 otherwise;
# records the accepted bodies.
import http.server, sys
TOKEN, OUT = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Authorization") != "Bearer " + TOKEN:
            self.send_response(401); self.end_headers(); return
        with open(OUT, "ab") as f:
            f.write(body + b"\n")
        self.send_response(202); self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", 18080), H).serve_forever()
EOF

cat > "$root/opt/tjfwd-test/driver.sh" <<'EOF'
#!/bin/bash
# Runs inside the container; every result goes to /out/result.
set -uo pipefail
exec > /out/driver.log 2>&1
fails=0
ok() { echo "ok: $1" >> /out/result; }
no() { echo "FAIL: $1" >> /out/result; fails=1; }
check() { local what="$1"; shift; if "$@"; then ok "$what"; else no "$what"; fi; }
metric() { python3 -c 'import sys, urllib.request
body = urllib.request.urlopen("http://127.0.0.1:9108/metrics", timeout=5).read().decode()
for line in body.splitlines():
    if line.startswith(sys.argv[1] + " "):
        print(line.split()[1]); break' "$1" 2>/dev/null; }
wait_for() { # wait_for SECONDS COMMAND...
    local n=$(( $1 * 10 )); shift
    for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
    return 1
}

TOKEN=test-token-0123456789
DEBIAN_FRONTEND=noninteractive dpkg -i /opt/tjfwd-test/tjfwd.deb || no "dpkg -i"
install -m 600 /dev/null /etc/tjfwd/token
echo "$TOKEN" > /etc/tjfwd/token
# Cowrie's home is private (0700); its log directory is what the unit binds.
logdir=/home/cowrie/cowrie/var/log/cowrie
mkdir -p "$logdir"
chmod 700 /home/cowrie
echo "not for tjfwd" > /home/cowrie/secret.txt
cp /opt/tjfwd-test/cowrie.json "$logdir/cowrie.json"
chmod 755 "$logdir"; chmod 644 "$logdir/cowrie.json"
sed -i \
    -e 's|^api_url = .*|api_url = "http://127.0.0.1:18080/v1/ip"|' \
    -e 's|^start_at = .*|start_at = "beginning"|' \
    -e 's|^flush_interval = .*|flush_interval = "1s"|' \
    -e 's|^# listen = "127.0.0.1:9108"|listen = "127.0.0.1:9108"|' \
    /etc/tjfwd/tjfwd.toml
systemd-run --quiet --unit=fake-api python3 /opt/tjfwd-test/fake_api.py "$TOKEN" /out/api.log
wait_for 10 python3 -c 'import socket; socket.create_connection(("127.0.0.1", 18080))' ||
    no "the fake API did not start"

systemctl start tjfwd.service
check "tjfwd.service is active" systemctl is-active --quiet tjfwd.service
pid="$(systemctl show -p MainPID --value tjfwd.service)"
check "it runs as user tjfwd" test "$(stat -c %U "/proc/$pid")" = tjfwd
check "ExecStartPre check-config succeeded" \
    sh -c 'systemctl show -p ExecStartPre tjfwd.service | grep -q "code=exited ; status=0 "'
check "the Cowrie log is visible to it" test -r "/proc/$pid/root$logdir/cowrie.json"
check "the rest of /home is not" test ! -e "/proc/$pid/root/home/cowrie/secret.txt"
check "the token is a credential" test -s /run/credentials/tjfwd.service/bearer_token
check "every address of the sample reached the API" wait_for 20 \
    python3 -c 'import ipaddress, json, os
want = set()
for line in open("/opt/tjfwd-test/cowrie.json"):
    try:
        e = json.loads(line)
        a = ipaddress.ip_address(e["src_ip"])
        a = getattr(a, "ipv4_mapped", None) or a  # tjfwd reports ::ffff:a.b.c.d as a.b.c.d
        if e["eventid"].startswith("cowrie.login.") and a.is_global:
            want.add(str(a))
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
got = set()
if os.path.exists("/out/api.log"):
    for line in open("/out/api.log"): got |= set(json.loads(line)["addresses"])
raise SystemExit(0 if want and want == got else 1)'
check "/healthz says ok" sh -c 'python3 -c "import urllib.request
print(urllib.request.urlopen(\"http://127.0.0.1:9108/healthz\", timeout=5).read().decode())" | grep -qx ok'
sent="$(python3 -c 'import json
print(sum(len(json.loads(l)["addresses"]) for l in open("/out/api.log")))' 2>/dev/null)"
check "/metrics counts the $sent reported addresses" \
    test -n "$sent" -a "$(metric 'tjfwd_addresses_reported_total{target="threatjammer"}')" = "$sent"
check "/metrics: nothing pending" test "$(metric tjfwd_pending_addresses)" = 0
check "/metrics: healthy" test "$(metric tjfwd_healthy)" = 1
journalctl --sync
check "journald: the bad line's warning has priority 4 (warning)" \
    sh -c 'journalctl -u tjfwd.service -p warning..warning -o cat | grep -q "skipped an input line"'
check "journald: info lines have priority 6 and no timestamp of their own" \
    sh -c 'journalctl -u tjfwd.service -p info..info -o cat | grep -q "^ INFO tjfwd::daemon: started\|^INFO tjfwd::daemon: started"'
check "journald: no <N> prefix is left in the messages" \
    sh -c '! journalctl -u tjfwd.service -o cat | grep -q "^<[0-7]>"'

systemctl reload tjfwd.service
check "systemctl reload: tjfwd read its configuration again" wait_for 10 \
    sh -c 'journalctl -u tjfwd.service -o cat | grep -q "configuration reloaded"'
check "systemctl reload: the same process goes on" \
    test "$(systemctl show -p MainPID --value tjfwd.service)" = "$pid"

systemctl stop tjfwd.service
check "systemctl stop: clean exit" \
    test "$(systemctl show -p ExecMainStatus --value tjfwd.service)" = 0
check "systemctl stop: the queue was flushed" \
    sh -c 'journalctl -u tjfwd.service -o cat | grep -q "stopped; queue flushed to disk"'
check "the state directory is tjfwd's, 0700" \
    test "$(stat -c "%U %a" /var/lib/tjfwd)" = "tjfwd 700"
journalctl -u tjfwd.service --no-pager -o short-monotonic > /out/journal.txt
[ "$fails" = 0 ] && echo PASS >> /out/result || echo FAILED >> /out/result
EOF
chmod 755 "$root/opt/tjfwd-test/driver.sh"

cat > "$root/etc/systemd/system/tjfwd-test.service" <<'EOF'
[Unit]
Description=tjfwd package test driver
After=basic.target
SuccessAction=poweroff-force
FailureAction=poweroff-force
[Service]
Type=oneshot
ExecStart=/opt/tjfwd-test/driver.sh
TimeoutStartSec=120
EOF

log "booting the container"
timeout 180 systemd-nspawn -D "$root" --quiet --console=pipe --private-network \
    --link-journal=no --register=no --keep-unit --bind="$out:/out" \
    --machine="tjfwd-test-$$" -b systemd.unit=tjfwd-test.service >"$out/console.log" 2>&1 || true

# TJFWD_TEST_KEEP=DIR keeps the container's output (logs, journal) there.
if [ -n "${TJFWD_TEST_KEEP:-}" ]; then
    mkdir -p "$TJFWD_TEST_KEEP" && cp -r "$out/." "$TJFWD_TEST_KEEP/"
fi
if [ ! -f "$out/result" ]; then
    log "the container produced no result:"
    cat "$out/console.log" "$out/driver.log" 2>/dev/null >&2 || true
    exit 1
fi
sed 's/^/test-systemd.sh: /' "$out/result" >&2
if ! grep -qx PASS "$out/result"; then
    log "tjfwd's journal in the container:"
    cat "$out/journal.txt" >&2 2>/dev/null || true
    cat "$out/driver.log" >&2 2>/dev/null || true
    exit 1
fi
log "all checks passed"
