# NixOS VM test: the FTP passive-mode failover of vmtests/ (the headline
# scenario), on four VMs.
#
#   client 192.168.0.2 ── vlan 1 ──┬── fw1 .11 ──┬── vlan 2 ── server 192.168.1.2
#                                  └── fw2 .12 ──┘
#   VIPs 192.168.0.100 / 192.168.1.100 (keepalived, one sync group, fw1 preferred)
#   fw1 sync0 10.99.0.1 ══ vlan 3 ══ fw2 sync0 10.99.0.2
#
# Both firewalls run services.ctsyncd (FT-FW over UDP, expectation sync),
# keepalived with the module's notify script, and etc/nftables/firewall.nft:
# an FTP data connection is forwarded only if its expectation is in the
# kernel. The client opens an FTP control connection through fw1 and gets
# a PASV port; fw1 crashes; fw2 takes the VIPs and commits; the client's
# data connection to the announced port must then pass fw2.
{ pkgs, module }:
let
  ftpClient = ../vmtests/ftp_client.py;

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

      services.ctsyncd = {
        enable = true;
        interface = "sync0";
        localAddress = "10.99.0.${toString n}";
        peerAddress = "10.99.0.${toString (3 - n)}";
        transport = "UDP";
        expectationSync = [ "ftp" ];
        ignoreAddresses = [
          "127.0.0.1"
          "::1"
          "10.99.0.0/30"
        ];
        logFile = "/var/log/ctsyncd/ctsyncd.log";
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
      };

    server =
      { pkgs, ... }:
      {
        imports = [ (endHost 2 "192.168.1.2") ];
        # Replies go to the server-side VIP (the firewalls SNAT to it),
        # which is on-link: no route needed.
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

  testScript = ''
    HOLDS_VIPS = ("ip -4 addr show dev eth0 | grep -q 192.168.0.100"
                  " && ip -4 addr show dev eth1 | grep -q 192.168.1.100")
    CTL = "ctsyncd -C /etc/ctsyncd/ctsyncd.conf"

    start_all()

    with subtest("daemons and keepalived start; fw1 becomes primary"):
        for fw in (fw1, fw2):
            fw.wait_for_unit("nftables.service")
            fw.wait_for_unit("ctsyncd.service")
            fw.succeed(f"{CTL} -s")
        server.wait_for_unit("ftpd.service")
        server.wait_for_open_port(21)
        fw1.wait_until_succeeds(HOLDS_VIPS, timeout=60)
        fw2.fail(HOLDS_VIPS)

    with subtest("FTP control connection and PASV through fw1"):
        client.succeed(
            "python3 ${ftpClient} 192.168.1.2 /tmp/pasv /tmp/go 300"
            " >/tmp/ftp_client.log 2>&1 &"
        )
        client.wait_until_succeeds("test -s /tmp/pasv", timeout=60)
        port = client.succeed("cat /tmp/pasv").strip()
        fw1.wait_until_succeeds(
            f"conntrack -L expect 2>/dev/null | grep -q 'dport={port} '", timeout=20)
        # fw2 holds it in its external cache, not yet in its kernel.
        fw2.wait_until_succeeds(f"{CTL} -e expect | grep -q 'dport={port} '", timeout=20)
        fw2.succeed(f"{CTL} -e | grep -q 'dport=21 .*helper=ftp'")
        fw2.fail(f"conntrack -L expect 2>/dev/null | grep -q 'dport={port} '")

    with subtest("fw1 crashes; fw2 takes the VIPs and commits"):
        fw1.crash()
        fw2.wait_until_succeeds(HOLDS_VIPS, timeout=60)
        fw2.wait_until_succeeds(
            "grep -q 'Committed 1 new expectations' /var/log/ctsyncd/ctsyncd.log", timeout=60)
        fw2.succeed(f"conntrack -L expect 2>/dev/null | grep -q 'dport={port} '")

    with subtest("the data connection to the announced port passes fw2"):
        client.succeed("touch /tmp/go")
        client.wait_until_succeeds("test -s /tmp/pasv.done", timeout=60)
        verdict = client.succeed("cat /tmp/pasv.done").strip()
        print(client.succeed("cat /tmp/ftp_client.log"))
        assert verdict.startswith("LISTED") and "hello.txt" in verdict, verdict
  '';
}
