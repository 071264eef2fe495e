#!/usr/bin/env bash
# Model-checks the allocator's lock-free parts with loom: the sample ring
# (one producer and one consumer; the fallback ring's producer lock; a
# producer switching to a new ring of its chain while the drainer follows), the
# try-lock, a slot changing hands with the owner's load + store counters, and
# the shared slot's read-modify-writes (allocator/src/lockfree/loom_models.rs).
# Built with `--cfg loom` in its own target directory, so the crate is reduced
# to those parts and nothing else is rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
  cargo test -p allocmeter --lib --release -- --test-threads=1
