# ctsyncd — developer entry points. `make help` lists them.

CARGO ?= cargo
RELEASE_BIN := target/release/ctsyncd

.PHONY: help build release test unit lint fmt run lab vmtests nix-check bench ci-deps ci fuzz clean cross cross-test cross-ci \
	cross-ci-start cross-ci-wait test-build \
	install uninstall install-check man-lint

# `make install` layout (GNU): DESTDIR for staged installs (packages).
PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/ctsyncd
# 1: also install `conntrackd` (and its man pages) as links to ctsyncd,
# which then uses conntrackd's default paths and names (README).
CONNTRACKD_LINK ?= 0
INSTALL ?= install
MAN_PAGES := man/ctsyncd.8 man/ctsyncd.conf.5

help:
	@echo "make build    debug build"
	@echo "make release  size-optimised release build ($(RELEASE_BIN))"
	@echo "make test     lint + every test (privileged ones need root)"
	@echo "make lint     rustfmt --check and clippy -D warnings"
	@echo "make man-lint the man pages pass mandoc -T lint and groff -wall (part of make test)"
	@echo "make install  binary, man pages, examples under PREFIX (/usr/local), DESTDIR; CONNTRACKD_LINK=1 adds conntrackd"
	@echo "make install-check  make install into a temporary DESTDIR and check the tree (part of make test)"
	@echo "make lab      the failover lab: install, build, run every scenario (root)"
	@echo "make nix-check  parse the flake, render the NixOS module's configs and check them"
	@echo "make run      run the daemon in the foreground with etc/ctsyncd.conf (root)"
	@echo "make bench    replication benchmark against conntrackd 1.4.7 (root; BENCH_ARGS=…, BENCH_LOSS_ARGS=…, BENCH_DUMP_ARGS=…)"
	@echo "make ci-deps  install what the tests need (Debian, root)"
	@echo "make fuzz     run every cargo-fuzz target for FUZZ_SECONDS (nightly + cargo-fuzz)"
	@echo "make cross TARGET=…       router binary target/cross/TARGET/small/ctsyncd (README: Router builds)"
	@echo "make cross-test TARGET=…  its tests and a smoke run under qemu-user"
	@echo "make cross-ci  the qemu-user tests for big-endian MIPS and ARMv7 (make test runs them in the background)"

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
	# The fuzz targets (`make fuzz`, nightly) are built by no test: linted
	# here on stable, or they rot (one did not compile for a session).
	cd fuzz && $(CARGO) fmt --check && $(CARGO) clippy --bins -- -D warnings

# The root tests that run real daemons use the release build, as a
# router does (tests/common/fw.rs reads CTSYNCD_TEST_BIN).
unit: release
	CTSYNCD_TEST_BIN=$(CURDIR)/$(RELEASE_BIN) $(CARGO) test

# The lab scenarios (network namespaces, real kernel, keepalived, FTP).
# The netns driver is checked against nixpkgs' driver semantics first,
# the bench's arithmetic and the gap probe's progress files (no root).
# commit_gap runs with LAB_GAP_FLOWS idle entries here (its default,
# 100 000, is the benchmark's: `make bench`); 20 000 keeps it under 60 s.
LAB_GAP_FLOWS ?= 20000
vmtests: release
	python3 vmtests/test_nixos_driver.py
	python3 benches/test_bench.py
	python3 vmtests/test_gap_probe.py
	LAB_GAP_FLOWS=$(LAB_GAP_FLOWS) python3 vmtests/run.py $(SCENARIOS)

# What of the flake can be checked without nixpkgs (nix/check.sh); the VM
# test itself is `nix flake check` on a machine with Nix and a cache.
nix-check: release
	nix/check.sh $(RELEASE_BIN)

# The router-target tests (.ci/cross.sh ci) run in the background at idle
# priority once the native builds are done (started during those, they
# slowed them: CI run 22), and are waited for last: one id per make run.
CROSS_RUN := $(shell date +%s%N)
test: lint man-lint test-build cross-ci-start unit install-check nix-check vmtests cross-ci-wait

test-build: release
	$(CARGO) test --no-run -q

lab: ci-deps vmtests

# ctsyncd against Debian's conntrackd 1.4.7 in the same run (results/).
bench: ci-deps release
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends conntrackd binutils >/dev/null
	python3 benches/bench.py $(BENCH_ARGS)
	# Issue 17's lossy-link targets: 20 % loss each way, 50 000 flows.
	python3 benches/bench.py --loss 20 --sizes 50000 --mixed-sizes '' --commit-gap 0 $(BENCH_LOSS_ARGS)
	# Issue 17 item 4: the backup's CPU with one -e during replication.
	python3 benches/bench.py --dump-during --sizes 50000 $(BENCH_DUMP_ARGS)
	# A sync link going down: how long each daemon keeps sending on it.
	python3 benches/link_failover.py ctsyncd=target/release/ctsyncd conntrackd=/usr/sbin/conntrackd

# Every warning of either formatter fails: mandoc's lint (style notes
# aside) and groff's -wall, as `man -l` renders with groff.
man-lint:
	@for m in $(MAN_PAGES); do \
		mandoc -T lint -W warning $$m || exit 1; \
		out=$$(LC_ALL=C.UTF-8 groff -wall -man -Tutf8 -z $$m 2>&1); \
		if [ -n "$$out" ]; then echo "$$out"; exit 1; fi; \
		out=$$(MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings=all -l $$m 2>&1 >/dev/null); \
		if [ -n "$$out" ]; then echo "$$m (man -l): $$out"; exit 1; fi; \
	done
	@echo "man-lint: $(MAN_PAGES) clean (mandoc -T lint, groff -wall, man -l)"

install: release
	$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR)/examples
	$(INSTALL) -m 0755 $(RELEASE_BIN) $(DESTDIR)$(SBINDIR)/ctsyncd
	$(INSTALL) -m 0644 man/ctsyncd.8 $(DESTDIR)$(MANDIR)/man8/ctsyncd.8
	$(INSTALL) -m 0644 man/ctsyncd.conf.5 $(DESTDIR)$(MANDIR)/man5/ctsyncd.conf.5
	cd etc && find . -type d -exec $(INSTALL) -d $(DESTDIR)$(DOCDIR)/examples/{} \; \
		&& find . -type f -perm -u+x -exec $(INSTALL) -m 0755 {} $(DESTDIR)$(DOCDIR)/examples/{} \; \
		&& find . -type f ! -perm -u+x -exec $(INSTALL) -m 0644 {} $(DESTDIR)$(DOCDIR)/examples/{} \;
	$(INSTALL) -m 0644 README.md SECURITY.md $(DESTDIR)$(DOCDIR)/
	@if [ "$(CONNTRACKD_LINK)" = 1 ]; then \
		set -x; \
		ln -sfn ctsyncd $(DESTDIR)$(SBINDIR)/conntrackd; \
		ln -sfn ctsyncd.8 $(DESTDIR)$(MANDIR)/man8/conntrackd.8; \
		ln -sfn ctsyncd.conf.5 $(DESTDIR)$(MANDIR)/man5/conntrackd.conf.5; \
	fi

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/ctsyncd $(DESTDIR)$(MANDIR)/man8/ctsyncd.8 $(DESTDIR)$(MANDIR)/man5/ctsyncd.conf.5
	@for l in $(DESTDIR)$(SBINDIR)/conntrackd $(DESTDIR)$(MANDIR)/man8/conntrackd.8 $(DESTDIR)$(MANDIR)/man5/conntrackd.conf.5; do \
		if [ -L $$l ] && case "$$(readlink $$l)" in ctsyncd*) true;; *) false;; esac; then rm -f $$l; fi; \
	done
	rm -rf $(DESTDIR)$(DOCDIR)

# `make install` into temporary DESTDIRs, with and without the conntrackd
# link: the tree, the modes, and the link behaving as conntrackd.
install-check: release
	.ci/install-check.sh

run: release
	$(RELEASE_BIN) -C etc/ctsyncd.conf

# Debian packages the tests and the lab use. Idempotent.
ci-deps:
	@if [ "$$(id -u)" != 0 ]; then echo "ci-deps: run as root"; exit 1; fi
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		iproute2 conntrack nftables keepalived iputils-arping python3 python3-pyftpdlib \
		netcat-openbsd pyflakes3 nix-bin mandoc groff-base man-db conntrackd \
		g++ >/dev/null

ci: ci-deps test

FUZZ_SECONDS ?= 30
FUZZ_TARGETS := wire_datagram kernel_codec control_proto config_parse engine_recv engine_pair sealed_datagram ctd_datagram ctd_pair switch_recv tcp_stream anti_entropy node_drive

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

# $$PPID: make itself, which the background run must not outlive.
cross-ci-start:
	.ci/cross.sh ci-start $(CROSS_RUN) $$PPID

cross-ci-wait:
	.ci/cross.sh ci-wait $(CROSS_RUN)

clean:
	$(CARGO) clean
