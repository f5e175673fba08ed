#!/usr/bin/env bash
# Runs every fuzz target of cairn for a given time and prints a table.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default 300 s, all targets)
#   fuzz/run.sh 30                                   (the CI call)
#
# Needs only a stable Rust toolchain: cargo-fuzz is installed if missing,
# and the targets are built with `cargo fuzz build -O -s none`, which on
# stable still gives libFuzzer its coverage (SanitizerCoverage inline 8-bit
# counters, PC table, comparison tracing): the `cov:` counter grows. What a
# stable build cannot have is AddressSanitizer; the targets are Rust, and
# allocations are still bounded: fuzz/src/lib.rs hands libFuzzer the malloc
# hooks a sanitizer would, so -malloc_limit_mb works.
#
# Each target starts from its committed seeds (fuzz/corpus/<target>) and
# the corpus grown by earlier runs (fuzz/work/corpus/<target>, not
# committed). A crash, a timeout or an out-of-memory is saved under
# fuzz/work/artifacts/<target>/ and makes the script exit 1 after the
# other targets have run; the target is restarted (at most RESTARTS times)
# to use the rest of its time.
#
# Environment: FUZZ_JOBS (targets run at once, default 1), FUZZ_TIMEOUT
# (seconds for one input, default 25), FUZZ_RSS_MB (default 2048),
# FUZZ_MALLOC_MB (one allocation, default 512), RESTARTS (default 2),
# FUZZ_CODEGEN_UNITS (default 16: a shorter build; 1 runs a little faster),
# FUZZ_TARGET_DIR (default fuzz/target), FUZZ_WORK (default fuzz/work).
set -uo pipefail

ALL_TARGETS=(query import_ndjson import_csv batch_csv http_get http snapshot)
SECS=${1:-300}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL_TARGETS[@]}")
case "$SECS" in '' | *[!0-9]*)
    echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
    ;;
esac

TIMEOUT=${FUZZ_TIMEOUT:-25}
RSS_MB=${FUZZ_RSS_MB:-2048}
MALLOC_MB=${FUZZ_MALLOC_MB:-512}
RESTARTS=${RESTARTS:-2}
JOBS=${FUZZ_JOBS:-1}
CGU=${FUZZ_CODEGEN_UNITS:-16}

FUZZ=$(cd "$(dirname "$0")" && pwd)
cd "$FUZZ" || exit 2
WORK=${FUZZ_WORK:-$FUZZ/work}
TARGET_DIR=${FUZZ_TARGET_DIR:-$FUZZ/target}

# ---------------------------------------------------------------- tools
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust with rustup (https://rustup.rs), stable is enough" >&2
    exit 2
fi
if ! command -v c++ >/dev/null && ! command -v g++ >/dev/null && ! command -v clang++ >/dev/null; then
    # libfuzzer-sys compiles libFuzzer (C++).
    if command -v apt-get >/dev/null; then
        SUDO=
        [ "$(id -u)" -ne 0 ] && SUDO=sudo
        $SUDO apt-get install -y g++ || { echo "a C++ compiler is needed (g++ or clang++)" >&2; exit 2; }
    else
        echo "a C++ compiler is needed (g++ or clang++)" >&2
        exit 2
    fi
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked || exit 2
fi

# ---------------------------------------------------------------- build
mkdir -p "$WORK/logs"
echo "== building the targets (cargo fuzz build -O -s none --codegen-units $CGU)"
t0=$(date +%s)
if ! cargo fuzz build -O -s none --codegen-units "$CGU" --target-dir "$TARGET_DIR" >"$WORK/logs/build.log" 2>&1; then
    tail -n 30 "$WORK/logs/build.log" >&2
    echo "build failed (log: $WORK/logs/build.log)" >&2
    exit 2
fi
BUILD_SECS=$(($(date +%s) - t0))
echo "== built in ${BUILD_SECS} s"
BIN=$TARGET_DIR/x86_64-unknown-linux-gnu/release
[ -x "$BIN/query" ] || BIN=$(dirname "$(find "$TARGET_DIR" -path '*/release/query' -type f | head -n 1)")

# ---------------------------------------------------------------- run
# Databases of the targets live under TMPDIR: /dev/shm when there is one,
# so that commits do not wait for a disk.
SCRATCH=$(mktemp -d "$( [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/cairn-fuzz.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
touch "$WORK/logs/.started"

run_target() {
    local t=$1 log=$WORK/logs/$1.log
    local corpus=$WORK/corpus/$t artifacts=$WORK/artifacts/$t/
    mkdir -p "$corpus" "$artifacts" "$SCRATCH/$t"
    : >"$log"
    local start end left runs=0
    start=$(date +%s)
    end=$((start + SECS))
    while :; do
        left=$((end - $(date +%s)))
        [ "$left" -le 0 ] && break
        runs=$((runs + 1))
        echo "== run $runs, $left s" >>"$log"
        TMPDIR=$SCRATCH/$t timeout -k 10 $((left + TIMEOUT + 60)) "$BIN/$t" "$corpus" "$FUZZ/corpus/$t" \
            -max_total_time="$left" -timeout="$TIMEOUT" -rss_limit_mb="$RSS_MB" -malloc_limit_mb="$MALLOC_MB" \
            -artifact_prefix="$artifacts" -print_final_stats=1 -print_funcs=0 -reload=0 >>"$log" 2>&1
        local rc=$?
        echo "== exit $rc" >>"$log"
        rm -rf "${SCRATCH:?}/$t"/*
        [ "$rc" -eq 0 ] && break
        [ "$runs" -gt "$RESTARTS" ] && break
    done
    echo "$(($(date +%s) - start))" >"$WORK/logs/$t.secs"
}

echo "== running ${#TARGETS[@]} targets for ${SECS} s each, $JOBS at a time; logs in $WORK/logs/"
running=0
for t in "${TARGETS[@]}"; do
    run_target "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait

# ---------------------------------------------------------------- report
printf '\n%-14s %8s %12s %8s %14s %9s %16s %8s\n' target seconds executions exec/s cov features corpus crashes
status=0
date_now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
RESULTS=$WORK/results.tsv
[ -f "$RESULTS" ] || printf 'date\ttarget\tseconds\texecutions\tcov_start\tcov\tfeatures\tcorpus_units\tcorpus_bytes\tcrashes\n' >"$RESULTS"
for t in "${TARGETS[@]}"; do
    log=$WORK/logs/$t.log
    secs=$(cat "$WORK/logs/$t.secs" 2>/dev/null || echo 0)
    execs=$(awk '/^stat::number_of_executed_units:/ {n += $2} END {print n + 0}' "$log")
    # The last status line: "#N DONE cov: C ft: F corp: U/S ...".
    last=$(grep -a -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -n 1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    # Coverage once the seeds have run, to show that it grows.
    cov0=$(grep -a -m 1 -E '^#[0-9]+[[:space:]]+INITED' "$log" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    units=$(find "$WORK/corpus/$t" -type f | wc -l)
    bytes=$(du -sb "$WORK/corpus/$t" | cut -f1)
    crashes=$(grep -a -c -E '^artifact_prefix=.*Test unit written to' "$log")
    abnormal=$(grep -a -c -E '^== exit [1-9]' "$log")
    [ "$abnormal" -gt "$crashes" ] && crashes=$abnormal
    [ "$crashes" -gt 0 ] && status=1
    rate=$((secs > 0 ? execs / secs : 0))
    printf '%-14s %8s %12s %8s %14s %9s %16s %8s\n' "$t" "$secs" "$execs" "$rate" "${cov0:-?}->${cov:-?}" \
        "${ft:-?}" "$units/$((bytes / 1024))K" "$crashes"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$date_now" "$t" "$secs" "$execs" "${cov0:-}" "${cov:-}" \
        "${ft:-}" "$units" "$bytes" "$crashes" >>"$RESULTS"
done
echo "build: ${BUILD_SECS} s; results appended to $RESULTS"
NEW_ARTIFACTS=$(find "$WORK/artifacts" -type f -newer "$WORK/logs/.started" 2>/dev/null)
if [ "$status" -ne 0 ] || [ -n "$NEW_ARTIFACTS" ]; then
    echo "FAILED: what crashed, hung or ran out of memory (see $WORK/logs/<target>.log):" >&2
    sed 's/^/  /' <<<"$NEW_ARTIFACTS" >&2
    echo "replay one with: $BIN/<target> <file>" >&2
    exit 1
fi
