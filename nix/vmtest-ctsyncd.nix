# services.ctsyncd settings of firewall n (1 or 2) in the FTP failover test.
# One source for both drivers: nix/vmtest.nix sets the NixOS module's
# options from it, and the netns lab (vmtests/nixos_lab.py) renders the
# same attributes with nix/render-config.nix.
n: {
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
}
