#!/usr/bin/env bash
# The published crates (allocmeter, allocmeter-dashboard, allocmeter-exporter)
# package and build from their tarballs, as `cargo publish` would do them:
# `cargo package` with verification (each tarball unpacked and built alone,
# against the others' tarballs, in dependency order), with all features, as
# docs.rs builds them. Then each tarball's file list is checked against its
# own manifest: every file the packaged Cargo.toml names is in it (library,
# build script, README, targets), the licenses travel with it as files, no
# path-only dependency survives, the README links nothing relative
# (crates.io cannot resolve it), and the page's assets are byte for byte the
# ones in dashboard/.
#
# Run from a clean clone (CI) or a work tree with uncommitted changes (it
# passes --allow-dirty: what is packaged is decided by each manifest's
# `include`, not by what git tracks).
set -euo pipefail
cd "$(dirname "$0")/.."
crates=(allocmeter allocmeter-dashboard allocmeter-exporter)
target=${CARGO_TARGET_DIR:-target}
version=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="allocmeter"))')

args=()
for crate in "${crates[@]}"; do args+=(-p "$crate"); done
# cargo warns "ignoring test `...` as `tests/...` is not included in the
# published package" once per [[test]]: expected, the manifests' `include`
# leaves the tests in the repository (they need the unpublished test kit).
echo "package: cargo package --all-features ${args[*]} (with verification)"
cargo package --locked --allow-dirty --all-features "${args[@]}"

for crate in "${crates[@]}"; do
  tarball="$target/package/$crate-$version.crate"
  [ -f "$tarball" ] || { echo "package: FAILED: $tarball was not written" >&2; exit 1; }
done

cargo metadata --format-version 1 --no-deps >"$target/package/metadata.json"
python3 - "$target/package" "$version" "${crates[@]}" <<'EOF'
import json, re, sys, tarfile, tomllib
from pathlib import Path

root, version, crates = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
source_dirs = {
    p["name"]: Path(p["manifest_path"]).parent
    for p in json.loads((root / "metadata.json").read_text())["packages"]
}
failures = []

def fail(crate, what):
    failures.append(f"{crate}: {what}")

for crate in crates:
    prefix = f"{crate}-{version}/"
    with tarfile.open(root / f"{crate}-{version}.crate") as tar:
        members = {m.name[len(prefix):]: m for m in tar.getmembers()}
        read = lambda name: tar.extractfile(members[name]).read()
        files = {name for name, m in members.items() if m.isfile()}
        size = sum(m.size for m in members.values() if m.isfile())
        print(f"package: {crate}: {len(files)} files, {size / 1024:.1f} KiB unpacked")

        manifest = tomllib.loads(read("Cargo.toml").decode())
        package = manifest["package"]

        # Every file the packaged manifest names is in the tarball.
        named = [manifest.get("lib", {}).get("path", "src/lib.rs")]
        if isinstance(package.get("build"), str):
            named.append(package["build"])
        for key in ("readme", "license-file"):
            if isinstance(package.get(key), str):
                named.append(package[key])
        for kind in ("bin", "example", "test", "bench"):
            named += [t["path"] for t in manifest.get(kind, []) if "path" in t]
        for path in named:
            if path not in files:
                fail(crate, f"the manifest names {path}, which is not in the package")
        # A build script left out is dropped silently (`build = false`), and
        # the package builds without what it sets.
        if (source_dirs[crate] / "build.rs").exists() and package.get("build") != "build.rs":
            fail(crate, "build.rs is not in the package (cargo dropped the build script)")

        # What every published crate carries.
        for path in ("README.md", "LICENSE-MIT", "LICENSE-APACHE"):
            if path not in files:
                fail(crate, f"{path} is not in the package")
            elif members[path].size == 0:
                fail(crate, f"{path} is empty in the package")
        if package.get("readme") != "README.md":
            fail(crate, f"readme is {package.get('readme')!r}, not its own README.md")
        if "repository" in package and "invalid" in package["repository"]:
            fail(crate, f"placeholder repository {package['repository']}")

        # No dependency is a path alone (cargo drops path-only dev-dependencies
        # such as the test kit; a test that needed one would not build).
        for table in ("dependencies", "dev-dependencies", "build-dependencies"):
            for name, dep in manifest.get(table, {}).items():
                if isinstance(dep, dict) and "path" in dep:
                    fail(crate, f"[{table}] {name} is a path dependency")
                if name == "allocmeter-test-support":
                    fail(crate, f"[{table}] names the unpublished allocmeter-test-support")

        # The tests stay in the repository (they need the unpublished test kit).
        shipped_tests = sorted(f for f in files if f.startswith(("tests/", "benches/")))
        if shipped_tests:
            fail(crate, f"ships tests or benches that cannot build from the package: {shipped_tests[:5]}")

        # crates.io shows the README without the repository around it.
        readme = read("README.md").decode()
        for link in re.findall(r"\]\(([^)\s]+)", readme):
            if not link.startswith(("https://", "http://", "#")):
                fail(crate, f"README.md links {link!r}, which crates.io cannot resolve")

        # The page ships as it is developed: dashboard/ is its one source.
        if crate == "allocmeter-dashboard":
            for asset in ("index.html", "app.js", "style.css"):
                if asset not in files:
                    fail(crate, f"{asset} is not in the package")
                elif read(asset) != Path("dashboard", asset).read_bytes():
                    fail(crate, f"{asset} differs from dashboard/{asset}")

for failure in failures:
    print(f"package: FAILED: {failure}", file=sys.stderr)
sys.exit(1 if failures else 0)
EOF
echo "package: OK: ${crates[*]} package and build from their tarballs"
