#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (FUZZ_SECONDS each, default 25),
# seeded from real inputs of the repository; called by .ci/run after the
# test suite. A crash fails the run: the input is kept under
# target/fuzz-bounded/artifacts/TARGET/ (reproduce with
# `cargo fuzz run TARGET FILE` in fuzz/), and belongs in a regression test.
#
# Toolchain: nightly with AddressSanitizer (cargo fuzz's default) when a
# nightly toolchain is installed; otherwise stable with `--sanitizer none`,
# which cargo-fuzz supports (coverage-guided, no ASan: tjfwd's own unsafe
# code is the decoder's SSE2 loads from bounds-checked 16-byte slices, and
# str::from_utf8_unchecked on bytes it checked to be ASCII).
# cargo-fuzz is installed when missing.
#
# FUZZ_SECONDS=0 skips the fuzzing (say so in the log) for quick local runs.
set -euo pipefail
cd "$(dirname "$0")"
repo="$(cd .. && pwd)"

SECONDS_EACH="${FUZZ_SECONDS:-25}"
TARGETS=(decode_line config_load cowrie_cfg control_protocol)

log() { echo "fuzz/run-bounded.sh: $*" >&2; }

if [ "$SECONDS_EACH" = 0 ]; then
    log "FUZZ_SECONDS=0: fuzzing skipped"
    exit 0
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

if rustup run nightly rustc --version >/dev/null 2>&1; then
    toolchain=(+nightly)
    sanitizer=()
    log "nightly toolchain: fuzzing with AddressSanitizer"
else
    toolchain=()
    sanitizer=(--sanitizer none)
    log "no nightly toolchain: fuzzing on stable with --sanitizer none"
fi

work="$repo/target/fuzz-bounded"
rm -rf "$work"
mkdir -p "$work/tmp"
# The targets keep scratch state (a queue, a cowrie.cfg) in TMPDIR.
export TMPDIR="$work/tmp"

# Seeds: real inputs. One file per input (a line for the line decoder and
# the control protocol, a whole file for the configuration readers).
seed() { # TARGET NAME < content
    mkdir -p "$work/seeds/$1"
    cat > "$work/seeds/$1/$2"
}
n=0
while IFS= read -r line; do
    n=$((n + 1))
    printf '%s\n' "$line" | seed decode_line "sample-$n"
done < <(head -n 200 "$repo/examples/sample/cowrie.json")
for f in "$repo/packaging/tjfwd.toml" "$repo/examples/sample/tjfwd.toml" \
    "$repo"/tests/fixtures/cowrie/*.toml; do
    seed config_load "$(basename "$(dirname "$f")")-$(basename "$f")" < "$f"
done
while IFS= read -r f; do
    seed cowrie_cfg "$(echo "${f#"$repo"/}" | tr / _)" < "$f"
done < <(find "$repo/tests/fixtures/cowrie" -name 'cowrie.cfg*' -type f | sort)
i=0
for req in \
    '{"cmd":"status"}' \
    '{"cmd":"export"}' \
    '{"cmd":"flush"}' \
    '{"cmd":"enqueue","sightings":[["203.0.113.7",1700000000000],["2001:db8::1",0],["::ffff:198.51.100.2",18446744073709551615]]}' \
    '{"cmd":"resend","filter":{"dead_letter":false,"active_only":true,"within_ms":3600000,"ip":"203.0.113.7","cidr":"203.0.113.0/24"}}' \
    '{"cmd":"resend","filter":{"dead_letter":true,"active_only":false,"within_ms":null,"ip":null,"cidr":null}}' \
    '{"ok":true,"result":{"pending":3}}' \
    '{"ok":false,"error":"request too large"}'; do
    i=$((i + 1))
    printf '%s\n' "$req" | seed control_protocol "request-$i"
done

log "building ${TARGETS[*]}"
cargo "${toolchain[@]}" fuzz build -O "${sanitizer[@]}" >&2

summary=()
for t in "${TARGETS[@]}"; do
    mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
    log "$t: ${SECONDS_EACH} s"
    status=0
    cargo "${toolchain[@]}" fuzz run -O "${sanitizer[@]}" "$t" \
        "$work/corpus/$t" "$work/seeds/$t" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$work/artifacts/$t/" -print_final_stats=1 \
        < /dev/null > "$work/$t.log" 2>&1 || status=$?
    runs="$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$work/$t.log" | tail -n 1)"
    if [ "$status" != 0 ]; then
        tail -n 60 "$work/$t.log" >&2
        log "$t FAILED (exit $status); the input: $(ls "$work/artifacts/$t/" 2>/dev/null | tr '\n' ' ')"
        log "reproduce: cd fuzz && cargo ${toolchain[*]} fuzz run ${sanitizer[*]} $t $work/artifacts/$t/FILE"
        exit 1
    fi
    summary+=("$t: ${runs:-? runs}, corpus $(ls "$work/corpus/$t" | wc -l) inputs, no crash")
done
for s in "${summary[@]}"; do log "$s"; done
