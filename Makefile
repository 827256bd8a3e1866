# ctsyncd — developer entry points. `make help` lists them.

CARGO ?= cargo
RELEASE_BIN := target/release/ctsyncd

.PHONY: help build release test unit lint fmt run lab vmtests nix-check bench ci-deps ci fuzz clean cross cross-test cross-ci

help:
	@echo "make build    debug build"
	@echo "make release  size-optimised release build ($(RELEASE_BIN))"
	@echo "make test     lint + every test (privileged ones need root)"
	@echo "make lint     rustfmt --check and clippy -D warnings"
	@echo "make lab      the failover lab: install, build, run every scenario (root)"
	@echo "make nix-check  parse the flake, render the NixOS module's configs and check them"
	@echo "make run      run the daemon in the foreground with etc/ctsyncd.conf (root)"
	@echo "make bench    replication benchmark against conntrackd 1.4.7 (root; BENCH_ARGS=…)"
	@echo "make ci-deps  install what the tests need (Debian, root)"
	@echo "make fuzz     run every cargo-fuzz target for FUZZ_SECONDS (nightly + cargo-fuzz)"
	@echo "make cross TARGET=…       router binary target/cross/TARGET/small/ctsyncd (README: Router builds)"
	@echo "make cross-test TARGET=…  its tests and a smoke run under qemu-user"
	@echo "make cross-ci  the qemu-user tests for big-endian MIPS and ARMv7 (part of make test)"

build:
	$(CARGO) build

release:
	$(CARGO) build --release
	@ls -l $(RELEASE_BIN)

fmt:
	$(CARGO) fmt

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# The root tests that run real daemons use the release build, as a
# router does (tests/common/fw.rs reads CTSYNCD_TEST_BIN).
unit: release
	CTSYNCD_TEST_BIN=$(CURDIR)/$(RELEASE_BIN) $(CARGO) test

# The lab scenarios (network namespaces, real kernel, keepalived, FTP).
# The netns driver is checked against nixpkgs' driver semantics first.
vmtests: release
	python3 vmtests/test_nixos_driver.py
	python3 vmtests/run.py $(SCENARIOS)

# What of the flake can be checked without nixpkgs (nix/check.sh); the VM
# test itself is `nix flake check` on a machine with Nix and a cache.
nix-check: release
	nix/check.sh $(RELEASE_BIN)

test: lint unit cross-ci nix-check vmtests

lab: ci-deps vmtests

# ctsyncd against Debian's conntrackd 1.4.7 in the same run (results/).
bench: ci-deps release
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends conntrackd binutils >/dev/null
	python3 benches/bench.py $(BENCH_ARGS)

run: release
	$(RELEASE_BIN) -C etc/ctsyncd.conf

# Debian packages the tests and the lab use. Idempotent.
ci-deps:
	@if [ "$$(id -u)" != 0 ]; then echo "ci-deps: run as root"; exit 1; fi
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		iproute2 conntrack nftables keepalived iputils-arping python3 python3-pyftpdlib \
		netcat-openbsd pyflakes3 nix-bin conntrackd >/dev/null

ci: ci-deps test

FUZZ_SECONDS ?= 30
FUZZ_TARGETS := wire_datagram kernel_codec control_proto config_parse engine_recv sealed_datagram ctd_datagram

fuzz:
	@command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo install cargo-fuzz (and a nightly toolchain)"; exit 1; }
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		cargo +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

# Router builds (.ci/cross.sh): Debian's Rust with -Zbuild-std, gcc cross
# toolchains or zig, qemu-user. Each installs what it needs (root).
cross:
	@test -n "$(TARGET)" || { echo "cross: TARGET=… (README: Router builds)"; exit 2; }
	.ci/cross.sh build $(TARGET)

cross-test:
	@test -n "$(TARGET)" || { echo "cross-test: TARGET=… (README: Router builds)"; exit 2; }
	.ci/cross.sh test $(TARGET)

cross-ci:
	.ci/cross.sh ci

clean:
	$(CARGO) clean
