#!/usr/bin/env bash
# The minimum supported Rust version holds: the `rust-version` the workspace
# states (root Cargo.toml, `[workspace.package]`) checks the published crates
# (allocmeter, allocmeter-dashboard, allocmeter-exporter) with all their
# features, against the committed Cargo.lock. Whatever features and
# dependencies are in the tree are checked, so this re-verifies the claim
# after any change.
#
# The toolchain is installed with rustup (minimal profile) when it is not
# there; where it cannot be (no network), the script says SKIPPED and why,
# and exits 0 unless MSRV_REQUIRED=1 (then 1).
set -euo pipefail
cd "$(dirname "$0")/.."
msrv=$(python3 -c 'import tomllib; print(tomllib.load(open("Cargo.toml", "rb"))["workspace"]["package"]["rust-version"])')
echo "msrv: rust-version = $msrv"
if ! cargo "+$msrv" --version >/dev/null 2>&1; then
  echo "msrv: installing Rust $msrv (rustup, minimal profile)"
  if ! log=$(rustup toolchain install "$msrv" --profile minimal 2>&1) \
     || ! cargo "+$msrv" --version >/dev/null 2>&1; then
    echo "msrv: SKIPPED: rustup cannot install Rust $msrv on this machine:" >&2
    grep -m 1 '^error' <<<"$log" >&2 || tail -n 1 <<<"$log" >&2
    [ "${MSRV_REQUIRED:-0}" = 1 ] && exit 1
    exit 0
  fi
fi
# --locked: the versions Cargo.lock pins are the ones claimed to build (a
# newer dependency release may need a newer Rust; the lock is what CI and
# this claim are about).
cargo "+$msrv" check --locked --all-features \
  -p allocmeter -p allocmeter-dashboard -p allocmeter-exporter
echo "msrv: OK: Rust $msrv checks allocmeter, allocmeter-dashboard and allocmeter-exporter with all features"
