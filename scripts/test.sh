#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: set-up, formatting, lints, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
# Every link of the README and docs/ works in a clone.
python3 scripts/check-links.py
cargo clippy --workspace --all-targets --locked -- -D warnings
# The tests' build first; then the fuzz targets' instrumented release build (minutes from
# cold) runs beside the tests at low priority, since the tests mostly wait on real media.
# `scripts/fuzz.sh all` below builds again (a no-op if this one finished) and reports
# any build failure, so this one's status does not matter.
cargo test --workspace --all-targets --locked --no-run
nice -n 10 scripts/fuzz.sh build >/dev/null 2>&1 &
fuzz_build=$!
trap 'kill "$fuzz_build" 2>/dev/null || true' EXIT
# setup.sh installed PostgreSQL: the metadata tests must run against it, not skip.
# What `cargo test --workspace --all-targets --locked` runs, two test binaries at a time
# (docs/testing.md).
RIVULET_TEST_REQUIRE_POSTGRES=1 scripts/run-tests.py
wait "$fuzz_build" || true
# The fuzz targets keep building and run briefly (coverage-guided, libFuzzer on stable;
# docs/fuzzing.md): 5 s each over the committed corpus.
scripts/fuzz.sh all 5s
