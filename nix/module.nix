# NixOS module: services.ctsyncd, a conntrackd-compatible connection
# tracking sync daemon for a keepalived primary/backup firewall pair.
#
# The configuration file is generated from the typed options plus the
# freeform `settings` (nix/render-config.nix), or taken verbatim from
# `configFile`. `checkConfig` runs `ctsyncd --check-config --strict` on it
# (any warning, such as a clause ctsyncd does not implement, fails) when the
# system is built, unless the build machine cannot run the host's binary
# (a cross-built router image): then the check is skipped, as nixpkgs'
# modules do. The daemon runs as a Type=notify unit; `notifyScript` is the
# keepalived notify script (primary|backup|fault) for a vrrp_sync_group.
#
# The package comes from the system's own `pkgs` (pkgs.ctsyncd when the
# flake's overlay is applied, else nix/package.nix built with `pkgs`), so
# crossSystem, musl and overlays apply to it.
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
  configPath = "/etc/ctsyncd/ctsyncd.conf";
  # Where systemd puts the LoadCredential'd key (never the store).
  credentialPath = "/run/credentials/ctsyncd.service/authentication-key";

  canCheck = pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform;

  # Scalars, lists of them, and nested blocks, as conntrackd.conf has.
  # A block's clauses are values again (not whole trees: a scalar inside a
  # top-level block, General.NetlinkEventsReliable = true, must type-check).
  settingsType =
    let
      scalar = types.nullOr (
        types.oneOf [
          types.bool
          types.int
          types.str
        ]
      );
      valueType =
        types.oneOf [
          scalar
          (types.listOf scalar)
          (types.lazyAttrsOf valueType)
        ]
        // {
          description = "conntrackd.conf clause value or block";
        };
    in
    types.attrsOf valueType
    // {
      description = "conntrackd.conf blocks and clauses";
    };

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
        settings
        extraGeneral
        extraSync
        ;
      authenticationKeyFile = if cfg.authenticationKeyFile == null then null else credentialPath;
      lockFile = "${runtimeDir}/ctsyncd.lock";
      socketPath = "${runtimeDir}/ctsyncd.ctl";
    }
  );

  source = if cfg.configFile != null then cfg.configFile else generated;

  # A configuration ctsyncd would refuse fails the system build, with the
  # parser's file:line:column message, instead of the unit at boot.
  checkedConfig =
    if cfg.checkConfig && canCheck then
      pkgs.runCommand "ctsyncd.conf" { } ''
        ${lib.getExe cfg.package} -C ${source} --check-config --strict
        cp ${source} $out
      ''
    else
      source;

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

  # keepalived's readiness check (etc/keepalived/keepalived.conf).
  readyScript = pkgs.writeShellScript "ctsyncd-ready" ''
    exec ${lib.getExe cfg.package} -C ${configPath} -s ready
  '';

  isStoreFile = p: builtins.isPath p || lib.hasPrefix "${builtins.storeDir}/" (toString p);
in
{
  options.services.ctsyncd = {
    enable = mkEnableOption "ctsyncd, connection tracking state replication between firewalls";

    package =
      lib.mkPackageOption pkgs "ctsyncd" {
        extraDescription = ''
          Without the flake's overlay (`pkgs.ctsyncd`), nix/package.nix
          built with this system's `pkgs`.
        '';
      }
      // {
        default = pkgs.ctsyncd or (pkgs.callPackage ./package.nix { });
        defaultText = lib.literalExpression "pkgs.ctsyncd or (pkgs.callPackage nix/package.nix { })";
      };

    checkConfig = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Whether to check the configuration with `ctsyncd --check-config
        --strict` when the system is built: a configuration ctsyncd refuses,
        or one with a start-up warning (a clause it parses but does not act
        on), fails the build. Skipped anyway when the build platform
        cannot execute the host platform's binaries (cross-compiled images).
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Whether to open the sync port (UDP, or TCP for transport TCP) on
        `interface` in NixOS's firewall.
      '';
    };

    configFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = lib.literalExpression "./conntrackd.conf";
      description = ''
        An existing conntrackd.conf to use verbatim instead of the generated
        file; it must be in the Nix store (a path literal is copied there),
        so the build-time check can read it. Its UNIX Path and LockFile
        should be under ${runtimeDir}, which the unit creates.
      '';
    };

    interface = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "sync0";
      description = "The dedicated sync link's interface (needed unless `configFile` is set).";
    };

    localAddress = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "10.99.0.1";
      description = "This firewall's address on the sync link (needed unless `configFile` is set).";
    };

    peerAddress = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "10.99.0.2";
      description = "The other firewall's sync-link address (needed for UDP and TCP).";
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
      description = "Clauses for the Mode block, in conntrackd.conf syntax (or use `settings`).";
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
      type = types.nullOr types.ints.positive;
      default = null;
      description = ''
        HashSize, for configurations ported from conntrackd. ctsyncd's
        caches grow as entries arrive (up to hashLimit), so the value is
        ignored with a warning, which the build-time check
        (`--check-config --strict`) refuses: leave it null.
      '';
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

    authenticationKeyFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/keys/ctsyncd-sync.key";
      description = ''
        A file with the sync channel's authentication key, outside the Nix
        store (the store is world-readable). systemd hands it to the unit as
        the credential `authentication-key` (LoadCredential=, so the file
        may be readable by root only, or an encrypted credential from
        systemd-creds); the configuration names only the credential's path
        (`AuthenticationKeyFile` in `Sync { Options { } }`). Needs a
        ctsyncd that knows that clause: older ones reject the configuration
        in the build-time check.
      '';
    };

    settings = mkOption {
      type = settingsType;
      default = { };
      example = lib.literalExpression ''
        {
          General.NetlinkEventsReliable = true;
          Sync."Mode FTFW".DisableExternalCache = true;
          Sync.Options.TCPWindowTracking = false;
        }
      '';
      description = ''
        conntrackd.conf as an attribute tree, merged over what the typed
        options generate (its values win): a bool renders On/Off, a list
        repeats the clause, null is a bare word, an attribute set a block.
        The mode's block is `"Mode <mode>"`, the link's `"<transport> Default"`.
      '';
    };

    extraGeneral = mkOption {
      type = types.lines;
      default = "";
      description = "Extra clauses for the General block, verbatim (or use `settings.General`).";
    };

    extraSync = mkOption {
      type = types.lines;
      default = "";
      description = "Extra clauses for the Sync block, verbatim (e.g. more dedicated links).";
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

    readyScript = mkOption {
      type = types.path;
      readOnly = true;
      default = readyScript;
      defaultText = lib.literalMD "`ctsyncd -C <config> -s ready`";
      description = ''
        keepalived check for this daemon: it fails while the resync this
        node asked for (the notify script's backup step) is incomplete.
        Declare it as `vrrp_script ctsyncd_ready { script "<script>"
        interval 1 timeout 3 fall 2 rise 2 weight -60 init_fail }` and
        track it from the vrrp_sync_group (`track_script { ctsyncd_ready
        }`), the weight's size above the gap between the two nodes'
        priorities: a returning node then takes the virtual addresses
        back only once it holds the state, with no preempt_delay to guess.
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.configFile != null || (cfg.interface != null && cfg.localAddress != null);
        message = "services.ctsyncd: set interface and localAddress, or configFile.";
      }
      {
        assertion = cfg.configFile != null || cfg.transport == "Multicast" || cfg.peerAddress != null;
        message = "services.ctsyncd: transport ${cfg.transport} needs peerAddress.";
      }
      {
        assertion = !cfg.openFirewall || cfg.interface != null;
        message = "services.ctsyncd.openFirewall opens the port on `interface`: set it.";
      }
      {
        assertion = cfg.configFile == null || isStoreFile cfg.configFile;
        message = ''
          services.ctsyncd.configFile must be in the Nix store (a path
          literal, or a file from pkgs.writeText), not ${toString cfg.configFile}:
          the build-time check cannot read files outside it.
        '';
      }
      {
        assertion =
          cfg.authenticationKeyFile == null
          || (
            lib.hasPrefix "/" cfg.authenticationKeyFile
            && !lib.hasPrefix "${builtins.storeDir}/" cfg.authenticationKeyFile
          );
        message = "services.ctsyncd.authenticationKeyFile must be an absolute path outside the Nix store.";
      }
      {
        assertion = cfg.configFile == null || cfg.authenticationKeyFile == null;
        message = "services.ctsyncd: authenticationKeyFile is rendered into the generated configuration; with configFile, name the credential (${credentialPath}) there.";
      }
    ];

    environment.etc."ctsyncd/ctsyncd.conf".source = checkedConfig;
    environment.systemPackages = [ cfg.package ];

    networking.firewall.interfaces = mkIf (cfg.openFirewall && cfg.interface != null) {
      ${cfg.interface} =
        if cfg.transport == "TCP" then { allowedTCPPorts = [ cfg.port ]; } else { allowedUDPPorts = [ cfg.port ]; };
    };

    systemd.services.ctsyncd = {
      description = "Connection tracking state synchronization (ctsyncd)";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      # keepalived's first notify (backup) should find the daemon ready.
      before = [ "keepalived.service" ];
      restartTriggers = [ checkedConfig ];
      # Never give up: keepalived's notify script runs `systemctl start`
      # at every transition, and a unit that hit its start limit refuses
      # it. The growing RestartSec keeps a crash loop cheap instead.
      startLimitIntervalSec = 0;
      serviceConfig = {
        Type = "notify";
        ExecStart = "${lib.getExe cfg.package} -C ${configPath}";
        Restart = "always";
        RestartSec = "1s";
        RestartSteps = 5;
        RestartMaxDelaySec = "30s";
        WatchdogSec = "10s";
        RuntimeDirectory = "ctsyncd";
        RuntimeDirectoryMode = "0700";
        LogsDirectory = "ctsyncd";
        LoadCredential = lib.optional (
          cfg.authenticationKeyFile != null
        ) "authentication-key:${cfg.authenticationKeyFile}";
        UMask = "0077";
        # ctnetlink, SO_BINDTODEVICE and forced socket buffers; and
        # CAP_SYS_NICE for the event loop's SCHED_RR (conntrackd 1.4.7's
        # default, which keeps bursts from overrunning the event socket).
        # For the same reason RestrictRealtime is off and the @resources
        # system calls (sched_setscheduler) stay allowed.
        CapabilityBoundingSet = [
          "CAP_NET_ADMIN"
          "CAP_NET_RAW"
          "CAP_SYS_NICE"
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
        PrivateDevices = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectKernelLogs = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectControlGroups = true;
        ProtectProc = "invisible";
        # Not ProcSubset = "pid": it hides /proc/loadavg, and without it
        # the commit assumes other work waits for a CPU and rests 1 ms in
        # every 10 (a tenth longer failover on an idle router).
        RestrictNamespaces = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        RestrictSUIDSGID = true;
        RemoveIPC = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [
          "@system-service"
          "~@privileged"
        ];
        SystemCallErrorNumber = "EPERM";
      };
    };
  };
}
