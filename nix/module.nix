# NixOS module: services.ctsyncd, a conntrackd-compatible connection
# tracking sync daemon for a keepalived primary/backup firewall pair.
#
# The configuration file is either generated from the options below
# (nix/render-config.nix) or taken verbatim from `configFile` (an existing
# conntrackd.conf); either way it is checked with `ctsyncd --check-config`
# when the system is built. The daemon runs as a Type=notify unit;
# `notifyScript` is the keepalived notify script (primary|backup|fault) for
# a vrrp_sync_group, bound to this unit and configuration.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    mkEnableOption
    mkIf
    mkOption
    types
    ;
  cfg = config.services.ctsyncd;

  runtimeDir = "/run/ctsyncd";

  generated = pkgs.writeText "ctsyncd.conf" (
    import ./render-config.nix {
      inherit (cfg)
        interface
        localAddress
        peerAddress
        transport
        port
        multicastGroup
        mode
        modeOptions
        expectationSync
        ignoreAddresses
        hashSize
        hashLimit
        logFile
        syslog
        extraGeneral
        extraSync
        ;
      lockFile = "${runtimeDir}/ctsyncd.lock";
      socketPath = "${runtimeDir}/ctsyncd.ctl";
    }
  );

  source = if cfg.configFile != null then cfg.configFile else generated;

  # A configuration ctsyncd would refuse fails the system build, with the
  # parser's file:line:column message, instead of the unit at boot.
  checkedConfig = pkgs.runCommand "ctsyncd.conf" { } ''
    ${lib.getExe cfg.package} -C ${source} --check-config
    cp ${source} $out
  '';

  configPath = "/etc/ctsyncd/ctsyncd.conf";

  notifyScript = pkgs.writeShellScript "ctsyncd-keepalived-notify" ''
    export PATH=${
      lib.makeBinPath [
        pkgs.coreutils
        pkgs.util-linux
        config.systemd.package
      ]
    }
    export CTSYNCD_BIN=${lib.getExe cfg.package}
    export CTSYNCD_CONFIG=${configPath}
    export CTSYNCD_START="systemctl start ctsyncd.service"
    exec ${cfg.package}/share/ctsyncd/primary-backup.sh "$@"
  '';
in
{
  options.services.ctsyncd = {
    enable = mkEnableOption "ctsyncd, connection tracking state replication between firewalls";

    package = mkOption {
      type = types.package;
      description = "The ctsyncd package (the flake's module sets it to the flake's build).";
    };

    configFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      description = ''
        An existing conntrackd.conf to use verbatim instead of the generated
        file. Its UNIX Path and LockFile should be under ${runtimeDir}, which
        the unit creates.
      '';
    };

    interface = mkOption {
      type = types.str;
      example = "sync0";
      description = "The dedicated sync link's interface.";
    };

    localAddress = mkOption {
      type = types.str;
      example = "10.99.0.1";
      description = "This firewall's address on the sync link.";
    };

    peerAddress = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "10.99.0.2";
      description = "The other firewall's sync-link address (UDP and TCP).";
    };

    transport = mkOption {
      type = types.enum [
        "Multicast"
        "UDP"
        "TCP"
      ];
      default = "UDP";
      description = "How the two firewalls talk on the sync link.";
    };

    port = mkOption {
      type = types.port;
      default = 3780;
      description = "UDP/TCP port, or the multicast Group number.";
    };

    multicastGroup = mkOption {
      type = types.str;
      default = "225.0.0.50";
      description = "Multicast group address (transport Multicast).";
    };

    mode = mkOption {
      type = types.enum [
        "FTFW"
        "NOTRACK"
        "ALARM"
      ];
      default = "FTFW";
      description = "Sync mode; FTFW is the reliable one.";
    };

    modeOptions = mkOption {
      type = types.lines;
      default = "";
      example = "DisableExternalCache On";
      description = "Clauses for the Mode block, in conntrackd.conf syntax.";
    };

    expectationSync = mkOption {
      type = types.either types.bool (types.listOf types.str);
      default = false;
      example = [
        "ftp"
        "sip"
      ];
      description = ''
        Replicate expectations (the RELATED flows of FTP, SIP, H.323 …):
        true for all, or a list of helper names.
      '';
    };

    ignoreAddresses = mkOption {
      type = types.listOf types.str;
      default = [
        "127.0.0.1"
        "::1"
      ];
      description = ''
        Connections from or to these addresses (or CIDR prefixes) are not
        replicated. The sync link's local address is always added.
      '';
    };

    hashSize = mkOption {
      type = types.ints.positive;
      default = 32768;
      description = "HashSize.";
    };

    hashLimit = mkOption {
      type = types.ints.positive;
      default = 131072;
      description = "HashLimit: the most entries per cache (about 2 × nf_conntrack_max).";
    };

    logFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/var/log/ctsyncd/ctsyncd.log";
      description = ''
        A log file in conntrackd's format, under /var/log/ctsyncd (the
        unit's LogsDirectory), for tools that grep conntrackd's log. The
        journal has every line anyway.
      '';
    };

    syslog = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Also log to syslog. The unit runs the daemon in the foreground, so
        the journal has every line already (`journalctl -u ctsyncd`).
      '';
    };

    extraGeneral = mkOption {
      type = types.lines;
      default = "";
      description = "Extra clauses for the General block.";
    };

    extraSync = mkOption {
      type = types.lines;
      default = "";
      description = "Extra clauses for the Sync block (e.g. more dedicated links).";
    };

    notifyScript = mkOption {
      type = types.path;
      readOnly = true;
      default = notifyScript;
      defaultText = lib.literalMD "a wrapper around `primary-backup.sh`";
      description = ''
        keepalived notify script for this daemon: use it in a
        vrrp_sync_group as `notify_master "<script> primary"`,
        `notify_backup "<script> backup"`, `notify_fault "<script> fault"`.
      '';
    };
  };

  config = mkIf cfg.enable {
    environment.etc."ctsyncd/ctsyncd.conf".source = checkedConfig;
    environment.systemPackages = [ cfg.package ];

    systemd.services.ctsyncd = {
      description = "Connection tracking state synchronization (ctsyncd)";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      # keepalived's first notify (backup) should find the daemon ready.
      before = [ "keepalived.service" ];
      restartTriggers = [ checkedConfig ];
      serviceConfig = {
        Type = "notify";
        ExecStart = "${lib.getExe cfg.package} -C ${configPath}";
        Restart = "always";
        RestartSec = "1s";
        WatchdogSec = "10s";
        RuntimeDirectory = "ctsyncd";
        RuntimeDirectoryMode = "0700";
        LogsDirectory = "ctsyncd";
        # ctnetlink, SO_BINDTODEVICE and forced socket buffers.
        CapabilityBoundingSet = [
          "CAP_NET_ADMIN"
          "CAP_NET_RAW"
        ];
        RestrictAddressFamilies = [
          "AF_UNIX"
          "AF_NETLINK"
          "AF_INET"
          "AF_INET6"
        ];
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectControlGroups = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        SystemCallArchitectures = "native";
      };
    };
  };
}
