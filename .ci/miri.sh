#!/usr/bin/env bash
# The allocator's unit tests under Miri (undefined behaviour, data races,
# aliasing): the ring, the sampled-block table, the try-lock, the counters.
# Miri needs the nightly toolchain with its `miri` component. This script
# installs them with rustup when it can; where it cannot (no nightly is
# reachable), it says so and exits non-zero, unless MIRI_OPTIONAL=1 (then it
# reports the skip and exits 0).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo +nightly miri --version >/dev/null 2>&1; then
  echo "miri: installing the nightly toolchain's miri component"
  if ! { rustup toolchain install nightly --profile minimal --component miri,rust-src >/dev/null 2>&1 \
         && cargo +nightly miri --version >/dev/null 2>&1; }; then
    echo "miri: SKIPPED: no nightly toolchain with miri can be installed on this machine" >&2
    [ "${MIRI_OPTIONAL:-0}" = 1 ] && exit 0
    exit 1
  fi
fi
# The rings and the table's buckets are never freed by design: not leaks.
export MIRIFLAGS="-Zmiri-ignore-leaks"
cargo +nightly miri test -p allocmeter --lib
