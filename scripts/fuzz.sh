#!/usr/bin/env bash
# Coverage-guided fuzzing on the stable toolchain: libFuzzer (libfuzzer-sys) with the
# SanitizerCoverage flags cargo-fuzz passes, no nightly needed.
#
#   scripts/fuzz.sh TARGET MINUTES     one target
#   scripts/fuzz.sh all MINUTES        every target, one after the other
#   scripts/fuzz.sh build              build only
#
# MINUTES may be fractional (0.5) or seconds with an `s` suffix (5s, as CI runs).
#
# The committed corpus (fuzz/corpus/TARGET) is copied to a scratch directory, so runs do
# not pollute the repository. Exits non-zero on a crash and prints the crash file.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

TARGETS=(rtmp_server rtmp_client amf0 flv_tags codec_configs cmaf_writer packager edge_playlist config_toml playback_token ts_demux webrtc_offer)
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
# What cargo-fuzz passes (minus -Zsanitizer=address, which needs nightly). With --target,
# RUSTFLAGS apply to the fuzzed crates only, not to build scripts and proc macros.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks \
-Cforce-frame-pointers ${RUSTFLAGS_EXTRA:-}"

build() {
    cargo build --release --locked --target "$TRIPLE" --bins
}

run() {
    local target=$1 seconds=$2
    local bin="$CARGO_TARGET_DIR/$TRIPLE/release/$target"
    local scratch
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/rivulet-fuzz-$target.XXXXXX")
    mkdir -p "$scratch/corpus" "$scratch/artifacts"
    if [ -d "corpus/$target" ]; then
        cp -r "corpus/$target/." "$scratch/corpus/"
    fi
    local dict=()
    if [ -f "dict/$target.dict" ]; then
        dict=(-dict="dict/$target.dict")
    fi
    echo "== $target: ${seconds}s, scratch $scratch"
    local status=0
    "$bin" "$scratch/corpus" "${dict[@]}" -max_total_time="$seconds" -max_len=65536 \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$scratch/artifacts/" >"$scratch/log" 2>&1 || status=$?
    grep -E '^#[0-9]+.*(INITED|DONE)|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added' "$scratch/log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$scratch/log"
        echo "CRASH in $target (exit $status): $(ls "$scratch"/artifacts/* 2>/dev/null | tr '\n' ' ')"
        return 1
    fi
    rm -rf "$scratch/corpus"
}

usage() {
    echo "usage: $0 TARGET|all MINUTES | build   (MINUTES: 1, 0.5, or seconds: 5s)" >&2
    echo "targets: ${TARGETS[*]}" >&2
    exit 2
}

# MINUTES as whole seconds for -max_total_time (0 would mean no limit).
seconds_of() {
    local s
    if [[ $1 =~ ^[0-9]+s$ ]]; then
        s=$((10#${1%s}))
    elif [[ $1 =~ ^([0-9]+|[0-9]*\.[0-9]+)$ ]]; then
        s=$(awk -v m="$1" 'BEGIN { s = int(m * 60 + 0.5); print (s < 1 && m > 0 ? 1 : s) }')
    else
        usage
    fi
    [ "$s" -gt 0 ] || usage
    echo "$s"
}

case ${1:-} in
    build) ;;
    all) [ $# -eq 2 ] || usage ;;
    *)
        [ $# -eq 2 ] && [[ " ${TARGETS[*]} " == *" $1 "* ]] || usage
        ;;
esac
[ "$1" = build ] || seconds=$(seconds_of "$2")
build
case $1 in
    build) ;;
    all)
        failed=0
        for t in "${TARGETS[@]}"; do
            run "$t" "$seconds" || failed=1
        done
        exit $failed
        ;;
    *) run "$1" "$seconds" ;;
esac
