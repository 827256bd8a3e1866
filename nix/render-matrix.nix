# Every combination of the renderer's options that nix/check.sh feeds to
# `ctsyncd --check-config`: transport × mode × expectation sync × address
# family × (the VM test's settings | every other option set). One
# evaluation renders them all. Builtins only.
let
  render = import ./render-config.nix;
  cross = builtins.foldl' (
    acc: dim: builtins.concatLists (map (a: map (v: a // v) dim) acc)
  ) [ { } ];
  axes = [
    (map (transport: { inherit transport; }) [
      "UDP"
      "TCP"
      "Multicast"
    ])
    (map (mode: { inherit mode; }) [
      "FTFW"
      "NOTRACK"
      "ALARM"
    ])
    (map (expectationSync: { inherit expectationSync; }) [
      true
      false
      [
        "ftp"
        "sip"
      ]
    ])
    [
      {
        localAddress = "10.99.0.1";
        peerAddress = "10.99.0.2";
        multicastGroup = "225.0.0.50";
      }
      {
        localAddress = "fd99::1";
        peerAddress = "fd99::2";
        multicastGroup = "ff02::fc";
      }
    ]
    [
      { logFile = "/var/log/ctsyncd/ctsyncd.log"; }
      {
        syslog = true;
        hashLimit = 65536;
        port = 3781;
        netlinkBufferSize = 4194304;
        netlinkBufferSizeMaxGrowth = 16777216;
        modeOptions = "PurgeTimeout 15";
        extraGeneral = "NetlinkOverrunResync On";
        extraSync = "";
        # The module's rendering: the systemd credential's path, which
        # exists only in the running unit (--check-config notes it).
        authenticationKeyFile = "/run/credentials/ctsyncd.service/authentication-key";
      }
    ]
  ];
  name =
    c:
    builtins.concatStringsSep " " [
      c.transport
      c.mode
      (builtins.toJSON c.expectationSync)
      c.localAddress
      (if c ? logFile then "defaults" else "all")
    ];
in
map (
  c:
  let
    args =
      c
      // {
        interface = "sync0";
        ignoreAddresses = [
          "127.0.0.1"
          "::1"
          "10.99.0.0/30"
        ];
      }
      // (
        if c ? logFile then
          { }
        else
          {
            settings = {
              General.HashLimit = 262144;
              General.NetlinkEventsReliable = true;
              Sync.Options.TCPWindowTracking = false;
              Sync."Mode ${c.mode}".CommitTimeout = 180;
            };
          }
      );
  in
  {
    name = name c;
    text = render args;
  }
) (cross axes)
