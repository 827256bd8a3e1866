# NixOS VM test: the FTP passive-mode failover on four VMs. The testScript
# is vmtests/scenarios/ftp_passive_failover_nixos.py, read as it is: `make
# lab` runs the same file on network namespaces (vmtests/nixos_lab.py sets
# up the same nodes there), so a wrong wait or address fails there first.
#
#   client 192.168.0.2 ── vlan 1 ──┬── fw1 .11 ──┬── vlan 2 ── server 192.168.1.2
#                                  └── fw2 .12 ──┘
#   VIPs 192.168.0.100 / 192.168.1.100 (keepalived, one sync group, fw1 preferred)
#   fw1 sync0 10.99.0.1 ══ vlan 3 ══ fw2 sync0 10.99.0.2
#
# Both firewalls run services.ctsyncd (nix/vmtest-ctsyncd.nix: FT-FW over
# UDP, expectation sync), keepalived with the module's notify script (and a
# sync-group `notify` that records the VRRP state in
# /run/ctsyncd-test/vrrp-state for the script), and etc/nftables/firewall.nft:
# an FTP data connection is forwarded only if its expectation is in the
# kernel. The client opens an FTP control connection through fw1 and gets
# a PASV port; fw1 crashes; fw2 takes the VIPs and commits; the client's
# data connection to the announced port must then pass fw2.
{ pkgs, module }:
let
  vrrpState = pkgs.writeShellScript "vrrp-state" ''
    # keepalived's sync-group notify: GROUP G1 STATE PRIORITY
    mkdir -p /run/ctsyncd-test && echo "$3" > /run/ctsyncd-test/vrrp-state
  '';

  # Interfaces are named as in the lab (eth0 LAN side, eth1 server side,
  # sync0), so the same nftables ruleset and keepalived layout apply. The
  # QEMU user-mode NIC is dropped so that eth0 is the vlan 1 NIC.
  common =
    { lib, ... }:
    {
      virtualisation.qemu.networkingOptions = lib.mkForce [ ];
      networking.useDHCP = false;
      networking.firewall.enable = false;
    };

  # A host with one NIC, eth0, on `vlan`.
  endHost =
    vlan: ip:
    { lib, ... }:
    {
      imports = [ common ];
      virtualisation.interfaces.eth0.vlan = vlan;
      networking.interfaces.eth0.ipv4.addresses = lib.mkForce (address ip 24);
      networking.interfaces.eth0.ipv6.addresses = lib.mkForce [ ];
    };

  address = a: p: [
    {
      address = a;
      prefixLength = p;
    }
  ];

  firewall =
    { n, priority }:
    {
      config,
      lib,
      pkgs,
      ...
    }:
    {
      imports = [
        common
        module
      ];
      virtualisation.interfaces = {
        eth0.vlan = 1;
        eth1.vlan = 2;
        sync0.vlan = 3;
      };
      networking.interfaces = {
        eth0.ipv4.addresses = lib.mkForce (address "192.168.0.${toString (10 + n)}" 24);
        eth1.ipv4.addresses = lib.mkForce (address "192.168.1.${toString (10 + n)}" 24);
        sync0.ipv4.addresses = lib.mkForce (address "10.99.0.${toString n}" 30);
        eth0.ipv6.addresses = lib.mkForce [ ];
        eth1.ipv6.addresses = lib.mkForce [ ];
        sync0.ipv6.addresses = lib.mkForce [ ];
      };
      boot.kernel.sysctl."net.ipv4.ip_forward" = 1;
      boot.kernelModules = [
        "nf_conntrack"
        "nf_conntrack_ftp"
        "nf_nat_ftp"
      ];
      networking.nftables = {
        enable = true;
        ruleset = builtins.readFile ../etc/nftables/firewall.nft;
      };
      environment.systemPackages = [ pkgs.conntrack-tools ];

      services.ctsyncd = import ./vmtest-ctsyncd.nix n // {
        enable = true;
        openFirewall = true;
      };

      services.keepalived = {
        enable = true;
        enableScriptSecurity = true;
        extraGlobalDefs = ''
          script_user root
          vrrp_garp_master_delay 1
          vrrp_garp_master_repeat 3
        '';
        vrrpInstances =
          let
            # Both start as BACKUP; fw1 wins on priority. A returning
            # primary first resyncs (notify backup: -n), then preempts.
            instance = interface: virtualRouterId: vip: {
              inherit interface virtualRouterId priority;
              state = "BACKUP";
              virtualIps = [ { addr = vip; } ];
              extraConfig = ''
                advert_int 1
                preempt_delay 5
              '';
            };
          in
          {
            VI_LAN0 = instance "eth0" 61 "192.168.0.100/24";
            VI_LAN1 = instance "eth1" 62 "192.168.1.100/24";
          };
        extraConfig = ''
          vrrp_sync_group G1 {
            group {
              VI_LAN0
              VI_LAN1
            }
            notify_master "${config.services.ctsyncd.notifyScript} primary"
            notify_backup "${config.services.ctsyncd.notifyScript} backup"
            notify_fault "${config.services.ctsyncd.notifyScript} fault"
            notify "${vrrpState}"
          }
        '';
      };
    };
in
pkgs.testers.runNixOSTest {
  name = "ctsyncd-ftp-passive-failover";

  nodes = {
    fw1 = firewall {
      n = 1;
      priority = 150;
    };
    fw2 = firewall {
      n = 2;
      priority = 100;
    };

    client =
      { pkgs, ... }:
      {
        imports = [ (endHost 1 "192.168.0.2") ];
        networking.defaultGateway = {
          address = "192.168.0.100";
          interface = "eth0";
        };
        environment.systemPackages = [ pkgs.python3 ];
        environment.etc."ctsyncd-test/ftp_client.py".source = ../vmtests/ftp_client.py;
      };

    server =
      { pkgs, ... }:
      {
        imports = [ (endHost 2 "192.168.1.2") ];
        # Replies go to the server-side VIP (the firewalls SNAT to it),
        # which is on-link: no route needed. nc: wait_for_open_port.
        environment.systemPackages = [ pkgs.netcat ];
        systemd.services.ftpd = {
          wantedBy = [ "multi-user.target" ];
          wants = [ "network-online.target" ];
          after = [ "network-online.target" ];
          script = ''
            mkdir -p /srv/ftp
            echo ctsyncd > /srv/ftp/hello.txt
            echo ctsyncd > /srv/ftp/failover.txt
            exec ${
              pkgs.python3.withPackages (ps: [ ps.pyftpdlib ])
            }/bin/python3 -m pyftpdlib -i 192.168.1.2 -p 21 -d /srv/ftp
          '';
        };
      };
  };

  testScript = builtins.readFile ../vmtests/scenarios/ftp_passive_failover_nixos.py;
}
