{
  description = "ctsyncd: conntrackd-compatible connection tracking state sync for Linux firewall pairs";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      systemOf = pkgs: pkgs.stdenv.hostPlatform.system;
    in
    {
      packages = forAllSystems (pkgs: rec {
        ctsyncd = pkgs.callPackage ./nix/package.nix { };
        default = ctsyncd;
      });

      overlays.default = final: _prev: {
        ctsyncd = final.callPackage ./nix/package.nix { };
      };

      # services.ctsyncd, with this flake's build as the default package.
      nixosModules.default =
        { lib, pkgs, ... }:
        {
          imports = [ ./nix/module.nix ];
          services.ctsyncd.package = lib.mkDefault self.packages.${systemOf pkgs}.default;
        };

      checks = forAllSystems (pkgs: {
        package = self.packages.${systemOf pkgs}.default;
        # The FTP passive-mode failover on four VMs (nix/vmtest.nix).
        failover = import ./nix/vmtest.nix {
          inherit pkgs;
          module = self.nixosModules.default;
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt-rfc-style);
    };
}
