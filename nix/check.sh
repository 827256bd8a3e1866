#!/bin/sh
# The part of the flake that can be checked without nixpkgs or a binary
# cache (neither is reachable here): every .nix file parses, and the NixOS
# module's configuration renderer (builtins only) produces, for every
# transport, mode and expectation setting, a file that ctsyncd accepts
# without a warning (`--check-config`, the same check the module runs at
# system build time).
# Building the package and running the VM test need `nix flake check`.
#
#   nix/check.sh [path/to/ctsyncd]
set -eu
cd "$(dirname "$0")/.."
BIN=${1:-target/release/ctsyncd}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

for f in flake.nix nix/*.nix; do
	nix-instantiate --parse "$f" >/dev/null
done
echo "nix-check: every .nix file parses"

render() {
	nix-instantiate --eval --strict --json -E "import ./nix/render-config.nix { $1 }" |
		python3 -c 'import json, sys; sys.stdout.write(json.load(sys.stdin))'
}

n=0
for transport in UDP TCP Multicast; do
	for mode in FTFW NOTRACK ALARM; do
		for exp in true false '[ "ftp" "sip" ]'; do
			for fam in v4 v6; do
				if [ $fam = v4 ]; then
					addrs='localAddress = "10.99.0.1"; peerAddress = "10.99.0.2"; multicastGroup = "225.0.0.50";'
				else
					addrs='localAddress = "fd99::1"; peerAddress = "fd99::2"; multicastGroup = "ff02::fc";'
				fi
				args="interface = \"sync0\"; $addrs transport = \"$transport\"; mode = \"$mode\";
					expectationSync = $exp; ignoreAddresses = [ \"127.0.0.1\" \"::1\" \"10.99.0.0/30\" ];
					logFile = \"/var/log/ctsyncd/ctsyncd.log\";"
				render "$args" >"$TMP/ctsyncd.conf"
				# Accepted without a single warning.
				if ! "$BIN" -C "$TMP/ctsyncd.conf" --check-config >/dev/null 2>"$TMP/err" || [ -s "$TMP/err" ]; then
					echo "nix-check: rejected or warned ($transport $mode $exp $fam):" >&2
					cat "$TMP/err" >&2
					cat "$TMP/ctsyncd.conf" >&2
					exit 1
				fi
				n=$((n + 1))
			done
		done
	done
done
echo "nix-check: $n rendered configurations pass ctsyncd --check-config"

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
