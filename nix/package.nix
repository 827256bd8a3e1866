# The ctsyncd package: the daemon, the keepalived notify script and the
# example configurations.
#
# Built with whatever `pkgs` calls it, so pkgsCross.* and pkgsStatic give
# cross and musl builds. `ctsyncdTests` becomes passthru.tests (the flake
# passes the NixOS VM test; not named `tests`, which callPackage would
# fill with pkgs.tests).
{
  lib,
  rustPlatform,
  stdenv,
  ctsyncdTests ? { },
}:
let
  manifest = (lib.importTOML ../Cargo.toml).package;
in
rustPlatform.buildRustPackage {
  pname = manifest.name;
  inherit (manifest) version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      ../benches
      ../etc
    ];
  };
  cargoLock.lockFile = ../Cargo.lock;

  # The library's unit tests run in the sandbox (no root, loopback only);
  # the kernel, netns and lab tests need root and run in `make test` and
  # in the NixOS VM test (checks.<system>.failover).
  cargoTestFlags = [ "--lib" ];
  # A cross build cannot run the target's test binaries.
  doCheck = stdenv.buildPlatform.canExecute stdenv.hostPlatform;

  postInstall = ''
    install -Dm755 etc/keepalived/primary-backup.sh $out/share/ctsyncd/primary-backup.sh
    install -Dm644 etc/keepalived/keepalived.conf $out/share/ctsyncd/examples/keepalived.conf
    install -Dm644 etc/nftables/firewall.nft $out/share/ctsyncd/examples/firewall.nft
    install -Dm644 -t $out/share/ctsyncd/examples etc/*.conf
  '';

  passthru.tests = ctsyncdTests;

  meta = {
    description = manifest.description;
    license = with lib.licenses; [
      mit
      asl20
    ];
    mainProgram = "ctsyncd";
    platforms = lib.platforms.linux;
  };
}
