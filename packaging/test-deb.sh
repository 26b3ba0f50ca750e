#!/usr/bin/env bash
# Builds the Debian package, installs it with dpkg on this machine, checks
# what it installed, upgrades it over an edited configuration (which must
# survive), removes it and purges it; then runs the unit under a real
# systemd in a container (packaging/test-systemd.sh; TJFWD_SKIP_NSPAWN=1
# skips that part). Needs root and dpkg; without them it says so and exits
# 0. Installs what it needs (dpkg-dev, systemd for systemd-analyze,
# systemd-container, cargo-deb) when missing. About a minute once built.
#
#   sudo packaging/test-deb.sh            # build, then test
#   sudo packaging/test-deb.sh FILE.deb   # test a package built already
#
# Safe to re-run: a package left installed by an interrupted run (marked in
# $MARKER) is purged first; a tjfwd package installed by anyone else makes
# the script stop without touching it.
set -euo pipefail
cd "$(dirname "$0")/.."

MARKER=/var/lib/tjfwd-test-deb.marker
CONFIG=/etc/tjfwd/tjfwd.toml
UNIT=/usr/lib/systemd/system/tjfwd.service
# The exposure score systemd-analyze security must not exceed ("OK" is < 2).
MAX_EXPOSURE=2.0

log() { echo "test-deb.sh: $*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
check() { # check DESCRIPTION COMMAND...
    local what="$1"; shift
    if "$@"; then log "ok: $what"; else fail "$what"; fi
}

if [ "$(id -u)" != 0 ]; then
    log "not root: the Debian package test is skipped (run it with sudo)"
    exit 0
fi
if ! command -v dpkg >/dev/null; then
    log "no dpkg here: the Debian package test is skipped"
    exit 0
fi
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

installed() { dpkg-query -W -f='${Status}' tjfwd 2>/dev/null | grep -q 'ok installed\|config-files'; }

purge() {
    if installed; then DEBIAN_FRONTEND=noninteractive dpkg --purge tjfwd >/dev/null; fi
    if [ -f "$MARKER" ] && grep -q '^created_user=1$' "$MARKER" && id -u tjfwd >/dev/null 2>&1; then
        userdel tjfwd 2>/dev/null || true
        getent group tjfwd >/dev/null && groupdel tjfwd 2>/dev/null || true
    fi
    rm -f "$MARKER" /etc/tjfwd/token
    rmdir /etc/tjfwd 2>/dev/null || true
}

if installed; then
    if [ -f "$MARKER" ]; then
        log "purging the package left by an earlier run"
        purge
    else
        log "tjfwd is installed here, not by this script: not touching it; stopping"
        exit 1
    fi
fi

# --- what we need ------------------------------------------------------
missing=()
command -v dpkg-shlibdeps >/dev/null || missing+=(dpkg-dev)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v adduser >/dev/null || missing+=(adduser)
if [ -z "${TJFWD_SKIP_NSPAWN:-}" ]; then
    command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
fi
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

# --- build ---------------------------------------------------------------
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
if [ $# -ge 1 ]; then
    deb="$1"
    deb2=""
else
    if ! cargo deb --version >/dev/null 2>&1; then
        log "installing cargo-deb"
        cargo install --locked --quiet cargo-deb
    fi
    log "building the package"
    deb="$(packaging/build-deb.sh --deb-revision 1 --output "$scratch/tjfwd-1.deb" | tail -n 1)"
    # The same files as revision 2, to test an upgrade.
    deb2="$(cargo deb --no-build --locked --deb-revision 2 --output "$scratch/tjfwd-2.deb" | tail -n 1)"
fi
[ -f "$deb" ] || fail "no package at $deb"
version="$(dpkg-deb -f "$deb" Version)"
log "testing $deb ($version)"

# --- install -------------------------------------------------------------
created_user=0
id -u tjfwd >/dev/null 2>&1 || created_user=1
printf 'created_user=%s\n' "$created_user" > "$MARKER"
DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" >/dev/null
trap 'rm -rf "$scratch"; log "cleaning up"; purge' EXIT

check "the package is installed" installed
check "the binary runs and has the package's version" \
    sh -c "tjfwd --version | grep -qx 'tjfwd ${version%-*}'"
check "/usr/bin/tjfwd is root's, mode 755" \
    test "$(stat -c '%U:%G %a' /usr/bin/tjfwd)" = "root:root 755"
check "the tjfwd system user exists, without a login shell" \
    sh -c 'getent passwd tjfwd | grep -q ":/var/lib/tjfwd:/usr/sbin/nologin$" &&
           [ "$(id -u tjfwd)" -lt 1000 ] && getent group tjfwd >/dev/null'
check "$CONFIG is a conffile" \
    sh -c "dpkg-query -W -f='\${Conffiles}' tjfwd | grep -q '^ $CONFIG '"
check "$CONFIG is root:tjfwd, mode 640" \
    test "$(stat -c '%U:%G %a' "$CONFIG")" = "root:tjfwd 640"
check "$CONFIG is the shipped example" cmp -s "$CONFIG" packaging/tjfwd.toml
check "the stat override of $CONFIG is registered" \
    sh -c "dpkg-statoverride --list $CONFIG | grep -qx 'root tjfwd 640 $CONFIG'"
check "/var/lib/tjfwd is tjfwd's, mode 700" \
    test "$(stat -c '%U:%G %a' /var/lib/tjfwd)" = "tjfwd:tjfwd 700"
check "the unit is installed" test -f "$UNIT"
check "the unit is neither enabled nor started" \
    sh -c '! systemctl is-enabled --quiet tjfwd 2>/dev/null'
check "the man page is installed" \
    sh -c 'zcat /usr/share/man/man1/tjfwd.1.gz | grep -q "^\.TH tjfwd 1"'
for f in /usr/share/bash-completion/completions/tjfwd \
    /usr/share/zsh/vendor-completions/_tjfwd \
    /usr/share/fish/vendor_completions.d/tjfwd.fish; do
    check "completion $f" sh -c "[ -s '$f' ] && grep -q tjfwd '$f'"
done
check "the README and docs are installed" \
    sh -c 'test -s /usr/share/doc/tjfwd/README.md && ls /usr/share/doc/tjfwd/docs/*.md >/dev/null'
check "tjfwd's user can read the configuration (check-config --dry-run)" \
    runuser -u tjfwd -- tjfwd check-config --config "$CONFIG" --dry-run -q >/dev/null

# The unit as installed (its ExecStart binary and man page exist now).
verify_out="$(systemd-analyze verify "$UNIT" 2>&1)" || fail "systemd-analyze verify: $verify_out"
[ -z "$verify_out" ] || fail "systemd-analyze verify complains: $verify_out"
log "ok: systemd-analyze verify $UNIT"
exposure="$(systemd-analyze security --offline=yes "$UNIT" 2>/dev/null |
    sed -n 's/.*Overall exposure level for tjfwd.service: \([0-9.]*\).*/\1/p')"
[ -n "$exposure" ] || fail "no exposure level from systemd-analyze security"
awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }' ||
    fail "systemd-analyze security: exposure $exposure > $MAX_EXPOSURE"
log "ok: systemd-analyze security: exposure $exposure (at most $MAX_EXPOSURE)"

# --- upgrade over an edited configuration ----------------------------------
if [ -n "${deb2:-}" ]; then
    echo '# edited by the administrator' >> "$CONFIG"
    DEBIAN_FRONTEND=noninteractive dpkg -i "$deb2" >/dev/null
    check "upgraded to $(dpkg-deb -f "$deb2" Version)" \
        test "$(dpkg-query -W -f='${Version}' tjfwd)" = "$(dpkg-deb -f "$deb2" Version)"
    check "the edited configuration survived the upgrade" \
        grep -qx '# edited by the administrator' "$CONFIG"
    check "and kept its owner and mode" \
        test "$(stat -c '%U:%G %a' "$CONFIG")" = "root:tjfwd 640"
fi

# --- remove, then purge ---------------------------------------------------
DEBIAN_FRONTEND=noninteractive dpkg -r tjfwd >/dev/null
check "remove deletes the binary and the unit" sh -c "[ ! -e /usr/bin/tjfwd ] && [ ! -e $UNIT ]"
check "remove keeps the configuration and the queue" \
    sh -c "[ -f $CONFIG ] && [ -d /var/lib/tjfwd ]"
DEBIAN_FRONTEND=noninteractive dpkg -P tjfwd >/dev/null
check "purge deletes the configuration, the queue and the stat override" \
    sh -c "[ ! -e $CONFIG ] && [ ! -e /var/lib/tjfwd ] && ! dpkg-statoverride --list $CONFIG >/dev/null"
check "nothing of the package is left" sh -c '! dpkg-query -W tjfwd >/dev/null 2>&1'
purge
trap 'rm -rf "$scratch"' EXIT

# --- the unit under systemd --------------------------------------------------
if [ -n "${TJFWD_SKIP_NSPAWN:-}" ]; then
    log "TJFWD_SKIP_NSPAWN is set: the unit is not run under systemd"
else
    packaging/test-systemd.sh "$deb"
fi
log "all checks passed"
