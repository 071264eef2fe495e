#!/usr/bin/env bash
# Bounded fuzzing of everything hostile input reaches, as property tests
# (proptest) with more cases than `cargo test` runs (256 each):
#
# - exporter/src/proptests.rs: the request parser (arbitrary bytes, mutated
#   and well-formed heads, every prefix of a head, oversized heads), the
#   token comparison, the routes' query handling (no response echoes the
#   request), the pprof encoder over arbitrary site tables, symbols and
#   mappings (the output must decode with the profile.proto structs and
#   stay consistent), and the JSON of call sites with arbitrary strings;
# - exporter/src/aggregate/detector_props.rs: the spike detector's two
#   guarantees over steps, climbs and bursts at arbitrary phases against the
#   tick, with noise on the quiet rate;
# - exporter/tests/http_fuzz.rs: arbitrary and mutated requests over real
#   sockets to a live exporter, which must answer each with a known status
#   or close, and keep serving.
#
# Fixed case counts (not a time budget), so that a run is reproducible in
# length: about a minute on a 2-core machine once the tests are built. Set
# FUZZ_CASES / FUZZ_WIRE_CASES to run longer. A failure prints the minimal
# failing input (proptest shrinks it).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
cases=${FUZZ_CASES:-3000}
wire_cases=${FUZZ_WIRE_CASES:-20000}

echo "fuzz: parser, token, routes, pprof and JSON encoders: $cases cases each"
PROPTEST_CASES=$cases cargo test -p allocmeter-exporter --lib proptests -- --test-threads=2

echo "fuzz: the spike detector's guarantees (steps, climbs, bursts, noise): $cases cases each"
PROPTEST_CASES=$cases cargo test -p allocmeter-exporter --lib detector_props -- --test-threads=2

echo "fuzz: requests over real sockets: $wire_cases cases"
PROPTEST_CASES=$wire_cases cargo test -p allocmeter-exporter --test http_fuzz

echo "fuzz: took $(($(date +%s) - started)) s"
