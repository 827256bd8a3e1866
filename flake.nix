{
  description = "ctsyncd: conntrackd-compatible connection tracking state sync for Linux firewall pairs";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      # Every Linux system nixpkgs exposes to flakes (x86_64, aarch64,
      # armv6l, armv7l, i686, powerpc64le, riscv64 …).
      systems = lib.filter (lib.hasSuffix "-linux") lib.systems.flakeExposed;
      # NixOS VM tests: where nixpkgs runs them (KVM on these hosts).
      vmTestSystems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAll = names: f: lib.genAttrs names (system: f nixpkgs.legacyPackages.${system});

      vmTest =
        pkgs:
        import ./nix/vmtest.nix {
          inherit pkgs;
          module = self.nixosModules.default;
        };
      ctsyncdFor =
        pkgs:
        pkgs.callPackage ./nix/package.nix {
          # The VM test for native builds of the VM-test systems only.
          ctsyncdTests = lib.optionalAttrs (
            lib.elem pkgs.stdenv.hostPlatform.system vmTestSystems
            && pkgs.stdenv.buildPlatform.config == pkgs.stdenv.hostPlatform.config
          ) {
            failover = vmTest pkgs;
          };
        };
    in
    {
      packages = forAll systems (
        pkgs:
        {
          ctsyncd = ctsyncdFor pkgs;
          default = self.packages.${pkgs.stdenv.hostPlatform.system}.ctsyncd;
        }
        # Router firmware: built on this system for another one.
        // lib.optionalAttrs (pkgs.stdenv.hostPlatform.system == "x86_64-linux") {
          ctsyncd-aarch64-musl = ctsyncdFor pkgs.pkgsCross.aarch64-multiplatform-musl;
          ctsyncd-armv7l = ctsyncdFor pkgs.pkgsCross.armv7l-hf-multiplatform;
          # Big-endian MIPS32 (o32), as on many routers; a tier-3 Rust
          # target, built only where nixpkgs' cross set can build its std.
          ctsyncd-mips = ctsyncdFor pkgs.pkgsCross.mips-linux-gnu;
        }
      );

      # pkgs.ctsyncd from the system's own nixpkgs (cross, musl, overlays).
      overlays.default = final: _prev: { ctsyncd = ctsyncdFor final; };

      # services.ctsyncd. Its package defaults to pkgs.ctsyncd when the
      # system applies overlays.default, else to nix/package.nix built with
      # the system's pkgs: either way the system's own nixpkgs (cross, musl).
      # The module sets no nixpkgs.overlays itself: that is an error where
      # pkgs is read-only (nixpkgs.pkgs, and every runNixOSTest node).
      nixosModules.default = ./nix/module.nix;

      checks = forAll vmTestSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.ctsyncd;
        # The FTP passive-mode failover on four VMs; its testScript is
        # vmtests/scenarios/ftp_passive_failover_nixos.py, which `make lab`
        # also runs on network namespaces.
        failover = vmTest pkgs;
      });

      devShells = forAll systems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.ctsyncd ];
          packages = [
            pkgs.clippy
            pkgs.rustfmt
            pkgs.nixfmt
            pkgs.conntrack-tools
            pkgs.keepalived
            pkgs.nftables
            pkgs.netcat
            (pkgs.python3.withPackages (ps: [ ps.pyftpdlib ]))
          ];
        };
      });

      formatter = forAll systems (pkgs: pkgs.nixfmt);
    };
}
