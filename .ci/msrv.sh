#!/usr/bin/env bash
# The minimum supported Rust version holds: the `rust-version` the workspace
# states (root Cargo.toml, `[workspace.package]`) checks the published crates
# (allocmeter, allocmeter-dashboard, allocmeter-exporter) with all their
# features, against the committed Cargo.lock. Whatever features and
# dependencies are in the tree are checked, so this re-verifies the claim
# after any change. Then a build for a non-Linux target must stop at
# allocmeter's one `compile_error!` (Linux only, said once).
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

# Linux only, and said once: a build for another target (Windows, whose libc
# lacks what allocmeter calls) stops at allocmeter's compile_error! alone,
# not at one error per missing item. Needs that target's standard library,
# installed with rustup; skipped, and said so, where it cannot be.
other=x86_64-pc-windows-gnu
if ! rustup target list --installed | grep -qx "$other" \
   && ! rustup target add "$other" >/dev/null 2>&1; then
  echo "msrv: SKIPPED the platform check: rustup cannot add the $other target" >&2
  exit 0
fi
if out=$(cargo check -p allocmeter --target "$other" 2>&1); then
  echo "msrv: FAILED: allocmeter built for $other; it must stop with its Linux-only error" >&2
  exit 1
fi
errors=$(grep -c '^error' <<<"$out" || true)
if ! grep -q '^error: allocmeter supports Linux only' <<<"$out" || [ "$errors" != 2 ]; then
  echo "msrv: FAILED: a build for $other must stop at allocmeter's one Linux-only error (and cargo's summary); it said:" >&2
  grep '^error' <<<"$out" >&2
  exit 1
fi
echo "msrv: OK: a build for $other stops at one error: $(grep -m 1 '^error: allocmeter' <<<"$out")"
