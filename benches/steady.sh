#!/usr/bin/env bash
# Daemon steady state: RSS and CPU of `tjfwd run --dry-run` tailing a
# Cowrie log, idle for a minute, then under a sustained append of 5,000
# lines/s for a minute (Cowrie-shaped lines from the benchmark generator,
# one write() per line as Cowrie does).
#
#   bash benches/steady.sh            # 60 s idle, 60 s at 5000 lines/s
#   SECONDS_IDLE=10 SECONDS_LOAD=10 RATE=5000 bash benches/steady.sh
#
# CPU is utime+stime of the daemon from /proc/PID/stat over each window;
# RSS is VmRSS from /proc/PID/status sampled every second (max and last),
# and VmHWM (peak) at the end. The generator runs beside it (on the other
# core of a 2-core machine) and is not counted.
set -euo pipefail

IDLE=${SECONDS_IDLE:-60}
LOAD=${SECONDS_LOAD:-60}
RATE=${RATE:-5000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
cargo build --release --quiet --bin tjfwd --example gen_cowrie_log
TJFWD=$ROOT/target/release/tjfwd
GEN=$ROOT/target/release/examples/gen_cowrie_log

DIR=$(mktemp -d /tmp/tjfwd-steady.XXXXXX)
DAEMON=""
WRITER=""
cleanup() {
    [ -n "$WRITER" ] && kill "$WRITER" 2>/dev/null || true
    [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

cat >"$DIR/tjfwd.toml" <<EOF
state_dir = "$DIR/state"
[input]
cowrie_json = "$DIR/cowrie.json"
start_at = "end"
# Every target, in --dry-run (nothing is sent; no credentials needed).
[targets.threatjammer]
api_url = "http://127.0.0.1:9/v1/ip"
[targets.abuseipdb]
[targets.crowdsec]
machine_id = "bench"
EOF
# Some history before the daemon starts (skipped: start_at = "end").
"$GEN" --lines 10000 --addresses 2000 --seed 2 --out "$DIR/cowrie.json" 2>/dev/null

"$TJFWD" run --config "$DIR/tjfwd.toml" --dry-run 2>"$DIR/tjfwd.log" &
DAEMON=$!
for _ in $(seq 100); do
    grep -q "started" "$DIR/tjfwd.log" 2>/dev/null && break
    sleep 0.1
done
sleep 2

TICK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$DAEMON/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$DAEMON/status"; }

# measure SECONDS: prints "cpu_s cpu_pct rss_max_kib rss_last_kib"
measure() {
    local secs=$1 t0 t1 max=0 rss
    t0=$(cpu_ticks)
    for _ in $(seq "$secs"); do
        sleep 1
        rss=$(rss_kib)
        [ "$rss" -gt "$max" ] && max=$rss
    done
    t1=$(cpu_ticks)
    awk -v d=$((t1 - t0)) -v hz="$TICK" -v s="$secs" -v m="$max" -v r="$rss" \
        'BEGIN { printf "%.2f %.2f %d %d\n", d / hz, 100 * d / hz / s, m, r }'
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
echo "rss after start: $(rss_kib) KiB"
read -r cpu pct max last < <(measure "$IDLE")
echo "idle ${IDLE}s: cpu=${cpu}s (${pct}%) rss_max=${max}KiB rss_last=${last}KiB"

LINES=$((RATE * LOAD))
"$GEN" --lines "$LINES" --addresses 50000 --seed 3 --rate "$RATE" --append --out "$DIR/cowrie.json" 2>"$DIR/gen.log" &
WRITER=$!
read -r cpu pct max last < <(measure "$LOAD")
wait "$WRITER" || true
WRITER=""
echo "load ${LOAD}s at ${RATE} lines/s: cpu=${cpu}s (${pct}%) rss_max=${max}KiB rss_last=${last}KiB"
echo "writer: $(cat "$DIR/gen.log")"
sleep 2
echo "peak rss (VmHWM): $(awk '/^VmHWM:/ {print $2}' "/proc/$DAEMON/status") KiB"
"$TJFWD" status --config "$DIR/tjfwd.toml" 2>&1 | sed 's/^/status: /' || true
kill "$DAEMON"
wait "$DAEMON" || true
DAEMON=""
grep -E "stopped" "$DIR/tjfwd.log" | tail -1 | sed 's/^/daemon: /'
