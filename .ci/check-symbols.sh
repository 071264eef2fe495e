#!/usr/bin/env bash
# Call sites are named right under every build a service uses: the fixture
# (test-support/fixtures/symbols) built with debug = 0, "line-tables-only",
# 1 and 2, each with and without frame pointers, must name every site whose
# stack runs through one of its functions after that function (never the
# allocator, the standard library or allocmeter), and with line tables
# (every level but 0) at the fixture's file and the line in that function
# that allocates, standard library code inlined there or not. Then a stripped build
# serves addresses, mappings and build IDs, and `go tool pprof` names them
# from a copy of the unstripped binary found by its build ID.
#
# The debug level is set for the fixture and allocmeter only (the crates
# whose frames are in a sampled stack); dependencies build once per
# frame-pointer setting: with them in $CARGO_TARGET_DIR (the workspace's
# own rustflags), without them in a target dir of their own.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()

build() { # build FP DEBUG: builds the fixture, prints the binary's path
  local fp=$1 debug=$2 dir=$target flags=()
  local overrides=(
    --config "profile.release.package.allocmeter-symbols-fixture.debug=$debug"
    --config "profile.release.package.allocmeter.debug=$debug"
  )
  # A service built with debug = 0 gets strip = "debuginfo" from cargo: the
  # standard library's debug info goes too.
  [ "$debug" = 0 ] && overrides+=(--config 'profile.release.strip="debuginfo"')
  if [ "$fp" = no ]; then
    dir=$target/check-symbols-no-fp
    flags=(env RUSTFLAGS="-C force-frame-pointers=no")
  fi
  "${flags[@]}" cargo build --release --quiet -p allocmeter-symbols-fixture \
    --target-dir "$dir" "${overrides[@]}" >&2
  local out="$work/fixture-fp-$fp-debug-$debug"
  cp "$dir/release/symbols-fixture" "$out"
  echo "$out"
}

# `check-symbols.sh FP DEBUG` checks one configuration (FP yes or no; DEBUG
# 0, '"line-tables-only"', 1 or 2), and the stripped build.
fps=(yes no) debugs=(0 '"line-tables-only"' 1 2)
[ $# -ge 1 ] && fps=("$1")
[ $# -ge 2 ] && debugs=("$2")
for fp in "${fps[@]}"; do
  for debug in "${debugs[@]}"; do
    echo "== frame pointers $fp, debug = $debug"
    bin=$(build "$fp" "$debug")
    # With line tables (every level but 0), each site also carries the
    # fixture's file and the line that allocates.
    lines=()
    [ "$debug" != 0 ] && lines=(--lines)
    if ! "$bin" check "${lines[@]}"; then
      failed+=("frame pointers $fp, debug = $debug")
    fi
  done
done

echo "== stripped, debug = 1: addresses, mappings and build IDs; go tool pprof names them"
bin=$work/fixture-fp-yes-debug-1
[ -x "$bin" ] || bin=$(build yes 1)
stripped=$work/stripped/symbols-fixture
mkdir -p "$(dirname "$stripped")"
strip -o "$stripped" "$bin"
for mode in "" --no-symbols; do
  profile=$work/heap$mode.pb.gz
  "$stripped" profile "$profile" $mode
  raw=$(go tool pprof -raw "$profile" 2>/dev/null)
  if ! grep -Eq "symbols-fixture +[0-9a-f]{40}\b" <<<"$raw"; then
    echo "no build ID on the stripped binary's mapping ($mode):"
    echo "$raw" | sed -n '/^Mappings/,$p'
    failed+=("stripped $mode: build ID")
  fi
  # The unstripped copy, given by path. (pprof can also find it as
  # $PPROF_BINARY_PATH/<build ID>/<name>, but Go 1.19's pprof reads no build
  # ID from these binaries and then ignores the file as a mismatch.)
  traces=$(go tool pprof -traces -sample_index=alloc_space "$bin" "$profile" 2>&1)
  for f in via_format via_to_string via_vec_push via_clone via_box_new via_hashmap_insert via_read_to_string; do
    if ! grep -Eq "(^|[ :])$f\b" <<<"$traces"; then
      echo "go tool pprof did not name $f ($mode)"
      failed+=("stripped $mode: $f")
    fi
  done
  echo "  go tool pprof named the program's functions in the stripped build's profile ($mode)"
done

if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "all configurations name their sites right"
