#!/bin/sh
# The part of the flake that can be checked without nixpkgs or a binary
# cache (neither is reachable here): every .nix file parses, and the NixOS
# module's configuration renderer (builtins only) produces, for every
# transport, mode, expectation setting and address family, with the
# defaults and with every other option set (logging, hash sizes, freeform
# `settings`, the verbatim extra* strings), a file that ctsyncd accepts
# without a warning (`--check-config --strict`, the same check the module
# runs at system build time), AuthenticationKeyFile included (the credential's
# path does not exist at build time: --check-config notes that on stdout
# and checks the file at start).
# Building the package and running the VM test need `nix flake check`.
#
#   nix/check.sh [path/to/ctsyncd]
set -eu
cd "$(dirname "$0")/.."
BIN=${1:-target/release/ctsyncd}
# Debian's nix-bin names a build group it does not create; nothing is built.
export NIX_CONFIG="build-users-group ="
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

for f in flake.nix nix/*.nix; do
	nix-instantiate --parse "$f" >/dev/null
done
echo "nix-check: every .nix file parses"

# The VM test's testScript is a lab scenario file, which `make lab` runs on
# network namespaces (vmtests/run.py runs every scenarios/*_nixos.py).
script=$(sed -n 's|^ *testScript = builtins.readFile \.\./\(vmtests/scenarios/[a-z0-9_]*_nixos\.py\);$|\1|p' nix/vmtest.nix)
if [ -z "$script" ] || [ ! -f "$script" ]; then
	echo "nix-check: nix/vmtest.nix's testScript is not a vmtests/scenarios/*_nixos.py file" >&2
	exit 1
fi
echo "nix-check: the VM test's testScript is $script, a lab scenario"
# Linted as nixpkgs' driver lints a testScript (pyflakes, the driver's
# globals as builtins), with exactly the globals vmtests/nixos_lab.py gives.
PYFLAKES=$(command -v pyflakes3 || command -v pyflakes || true)
if [ -z "$PYFLAKES" ]; then
	echo "nix-check: pyflakes is needed (make ci-deps installs pyflakes3)" >&2
	exit 1
fi
PYFLAKES_BUILTINS=start_all,subtest,retry,log,machines,client,fw1,fw2,server "$PYFLAKES" "$script"
echo "nix-check: $script passes pyflakes with the driver's globals"

render() {
	nix-instantiate --eval --strict --json -E "import ./nix/render-config.nix { $1 }" |
		python3 -c 'import json, sys; sys.stdout.write(json.load(sys.stdin))'
}

# One evaluation renders every combination (nix/render-matrix.nix); each
# must be accepted without a single warning.
nix-instantiate --eval --strict --json nix/render-matrix.nix >"$TMP/matrix.json"
python3 - "$BIN" "$TMP" <<'PY'
import json, subprocess, sys
binary, tmp = sys.argv[1:]
configs = json.load(open(f"{tmp}/matrix.json"))
for c in configs:
    path = f"{tmp}/ctsyncd.conf"
    with open(path, "w") as f:
        f.write(c["text"])
    p = subprocess.run([binary, "-C", path, "--check-config", "--strict"], capture_output=True, text=True)
    if p.returncode != 0 or p.stderr:
        sys.exit(f"nix-check: rejected or warned ({c['name']}):\n{p.stderr}\n{c['text']}")
print(f"nix-check: {len(configs)} rendered configurations pass ctsyncd --check-config --strict")
PY

# Misuse fails at evaluation with a message, not with a broken file.
if out=$(render 'interface = "sync0"; localAddress = "10.99.0.1"; transport = "UDP";' 2>&1); then
	echo "nix-check: UDP without peerAddress was accepted" >&2
	exit 1
fi
case "$out" in
*"needs peerAddress"*) echo "nix-check: UDP without peerAddress is refused" ;;
*)
	echo "nix-check: unexpected error: $out" >&2
	exit 1
	;;
esac
