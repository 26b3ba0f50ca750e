#!/usr/bin/env bash
# End-to-end benchmarks of tjfwd (README "Benchmarks"):
#
# 1. hyperfine: `tjfwd replay` of a 2,000,000-line generated Cowrie log with
#    50,000 unique addresses into a fresh state dir, against the floor
#    (examples/floor.rs: read, split, serde_json into a borrowed struct);
# 2. peak RSS of that replay (`/usr/bin/time -v`);
# 3. bytes on disk per pending address after it (and in a fresh copy of
#    the same data: what sled needs at best);
# 4. startup with 1,000,000 pending addresses: open → ready to send through
#    the library (examples/queue_startup.rs), cold (page cache dropped, when
#    root) and warm, and `tjfwd run --dry-run` until its first batch.
#
#   bash benches/replay.sh                      # everything
#   RUNS=3 ROUNDS=2 BENCH_DIR=/var/tmp/tjfwd-bench bash benches/replay.sh
#
# Needs hyperfine and GNU time (`apt-get install hyperfine time`). The log
# (~850 MiB) and the state directories live in $BENCH_DIR (default
# /tmp/tjfwd-bench) and are reused between runs.
set -euo pipefail

RUNS=${RUNS:-5}
ROUNDS=${ROUNDS:-3}
PEAKS=${PEAKS:-5}
LINES=${LINES:-2000000}
ADDRESSES=${ADDRESSES:-50000}
PENDING=${PENDING:-1000000}
BENCH_DIR=${BENCH_DIR:-/tmp/tjfwd-bench}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
cargo build --release --quiet --bin tjfwd --example floor --example gen_cowrie_log --example queue_startup
BIN=$ROOT/target/release
TJFWD=$BIN/tjfwd
mkdir -p "$BENCH_DIR"
LOG=$BENCH_DIR/cowrie-${LINES}-${ADDRESSES}.json
STATE=$BENCH_DIR/state
CONF=$BENCH_DIR/tjfwd.toml
# The targets enabled (TARGETS=all: Threat Jammer, AbuseIPDB and CrowdSec,
# the issue's configuration; TARGETS=threatjammer: the one target of the
# earlier figures). Nothing is sent by a replay or a dry run: the
# credentials are placeholders, the endpoints on loopback.
TARGETS=${TARGETS:-all}
for f in tj.token abuseipdb.key crowdsec.password; do
    (umask 077 && echo "placeholder-$f" >"$BENCH_DIR/$f")
done
write_conf() { # state_dir, file
    {
        printf 'state_dir = "%s"\n\n' "$1"
        printf '[targets.threatjammer]\napi_url = "http://127.0.0.1:9/v1/ip"\nbearer_token_file = "%s"\n\n' "$BENCH_DIR/tj.token"
        if [ "$TARGETS" = all ]; then
            printf '[targets.abuseipdb]\napi_url = "http://127.0.0.1:9/api/v2"\napi_key_file = "%s"\n\n' "$BENCH_DIR/abuseipdb.key"
            printf '[targets.crowdsec]\nlapi_url = "http://127.0.0.1:9"\nmachine_id = "bench"\npassword_file = "%s"\n' "$BENCH_DIR/crowdsec.password"
        fi
    } >"$2"
}
write_conf "$STATE" "$CONF"
echo "## targets: $TARGETS"

echo "## machine"
echo "$(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') @ $(grep -m1 'cpu MHz' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') MHz, $(grep -m1 'cache size' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') cache, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM; $(uname -sr); $(rustc --version)"

if [ ! -s "$LOG" ]; then
    "$BIN/examples/gen_cowrie_log" --lines "$LINES" --addresses "$ADDRESSES" --seed 1 --out "$LOG"
fi
echo "## log: $LOG ($(stat -c %s "$LOG") bytes, $LINES lines, $ADDRESSES addresses)"

# A fresh state directory with an empty database (replay wants one that
# `tjfwd run` created): not timed.
FRESH="rm -rf $STATE && $TJFWD run --config $CONF --dry-run --drain -q"
REPLAY="$TJFWD replay --config $CONF --no-progress-bar -q $LOG"
FLOOR="$BIN/examples/floor $LOG"

# The machine this was written on is a shared VM whose speed drifts by
# tens of percent within minutes: the two commands are timed in ROUNDS
# hyperfine runs of RUNS each, and each round's ratio is taken between
# runs minutes apart at most. The CPU time (user + sys) is printed too:
# tjfwd uses three threads, the floor one.
echo "## replay vs floor (hyperfine, $ROUNDS rounds of $RUNS runs each)"
for round in $(seq "$ROUNDS"); do
    hyperfine --warmup 1 --runs "$RUNS" --style basic \
        --export-json "$BENCH_DIR/replay-$round.json" \
        --prepare "$FRESH" -n "tjfwd replay" "$REPLAY" \
        --prepare "true" -n "floor" "$FLOOR"
done
python3 - "$BENCH_DIR" "$ROUNDS" "$LINES" <<'EOF'
import json, statistics, sys
base, rounds, lines = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ratios = []
for k in range(1, rounds + 1):
    r = {x["command"]: x for x in json.load(open(f"{base}/replay-{k}.json"))["results"]}
    t, f = r["tjfwd replay"], r["floor"]
    ratios.append(f["mean"] / t["mean"])
    print(f"round {k}: tjfwd replay {t['mean']:.3f} s ± {t['stddev']:.3f} "
          f"(user+sys {t['user'] + t['system']:.2f} s, {lines / t['mean'] / 1e6:.2f} M lines/s); "
          f"floor {f['mean']:.3f} s ± {f['stddev']:.3f} (user+sys {f['user'] + f['system']:.2f} s, "
          f"{lines / f['mean'] / 1e6:.2f} M lines/s); tjfwd / floor throughput {ratios[-1]:.2f}x")
print(f"tjfwd / floor throughput, median of {rounds} rounds: {statistics.median(ratios):.2f}x "
      f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)")
EOF

# Peak RSS depends a little on how the threads are scheduled: several runs.
echo "## peak RSS of the replay (/usr/bin/time, $PEAKS runs)"
for i in $(seq "$PEAKS"); do
    bash -c "$FRESH"
    /usr/bin/time -f "peak RSS %M KiB, %e s wall, %U s user, %S s sys" $REPLAY >/dev/null
done

echo "## bytes on disk per pending address after the replay"
"$BIN/examples/queue_startup" space "$STATE"
# The same data written once into a fresh database: sled's floor.
rm -rf "$STATE-copy"
"$BIN/examples/queue_startup" copy "$STATE" "$STATE-copy"

echo "## startup with $PENDING pending addresses"
Q=$BENCH_DIR/pending-$PENDING
if [ ! -d "$Q" ]; then
    "$BIN/examples/queue_startup" fill "$Q" "$PENDING"
else
    "$BIN/examples/queue_startup" space "$Q"
fi
for i in 1 2 3; do
    if [ "$(id -u)" = 0 ] && sync && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
        echo -n "cold: "
    else
        echo -n "warm: "
    fi
    "$BIN/examples/queue_startup" open "$Q"
done
for i in 1 2 3; do
    echo -n "warm: "
    "$BIN/examples/queue_startup" open "$Q"
done
# The daemon itself: from exec to its first (dry-run) batch of 1000.
write_conf "$Q" "$BENCH_DIR/pending.toml"
for i in 1 2 3; do
    OUT=$BENCH_DIR/run.log
    start=$(date +%s%N)
    "$TJFWD" run --config "$BENCH_DIR/pending.toml" --dry-run 2>"$OUT" &
    pid=$!
    until grep -q "would send a batch" "$OUT"; do sleep 0.005; done
    end=$(date +%s%N)
    kill "$pid"
    wait "$pid" || true
    echo "tjfwd run --dry-run: first batch of $(grep -m1 -o 'count=[0-9]*' "$OUT" | cut -d= -f2) after $(((end - start) / 1000000)) ms"
done
