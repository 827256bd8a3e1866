# Renders ctsyncd.conf (conntrackd.conf syntax) from the NixOS module's
# typed options plus its freeform `settings` (RFC 42). Only builtins are
# used, so `make nix-check` can evaluate it with a bare nix-instantiate and
# feed the result to `ctsyncd --check-config`.
#
# The typed options are turned into the same attribute tree `settings`
# uses, and `settings` is merged over it (its values win):
#
#   { General.HashLimit = 8192;                 ->  General {
#     General."Filter From Userspace"."Address Ignore".IPv4_address = [ … ];       HashLimit 8192
#     Sync."Mode FTFW".DisableExternalCache = true;                                …
#     Sync.Options.ExpectationSync = { ftp = null; }; }
#
# A value renders as: bool -> On/Off, int or string -> itself, list -> the
# clause once per element, null -> the bare key, attrs -> a block. Within a
# block, clauses come in attribute-name order. The `extra*`/`modeOptions`
# strings are appended verbatim to their blocks.
{
  interface,
  localAddress,
  peerAddress ? null,
  transport ? "UDP",
  port ? 3780,
  multicastGroup ? "225.0.0.50",
  mode ? "FTFW",
  modeOptions ? "",
  expectationSync ? false,
  ignoreAddresses ? [ ],
  # conntrackd's bucket count: ctsyncd ignores it and says so (a warning,
  # which `--check-config --strict` refuses), so it is rendered only when set.
  hashSize ? null,
  hashLimit ? 131072,
  netlinkBufferSize ? 2097152,
  netlinkBufferSizeMaxGrowth ? 8388608,
  lockFile ? "/run/ctsyncd/ctsyncd.lock",
  socketPath ? "/run/ctsyncd/ctsyncd.ctl",
  logFile ? null,
  syslog ? false,
  # Sync { Options { AuthenticationKeyFile PATH } }, only when set. The
  # path is the key's at run time (a systemd credential), never the store.
  authenticationKeyFile ? null,
  settings ? { },
  extraGeneral ? "",
  extraSync ? "",
}:
let
  inherit (builtins)
    attrNames
    concatStringsSep
    filter
    isAttrs
    isBool
    isInt
    isList
    isString
    mapAttrs
    ;
  isV6 = a: builtins.match ".*:.*" a != null;
  family = a: if isV6 a then "IPv6" else "IPv4";
  onOff = b: if b then "On" else "Off";
  optionalAttrs = c: a: if c then a else { };

  # The sync link's own addresses never need replicating.
  ignored = ignoreAddresses ++ [ localAddress ];
  addressesOf = fam: filter (a: family a == fam) ignored;

  link =
    if transport == "Multicast" then
      {
        "${family multicastGroup}_address" = multicastGroup;
        Group = port;
        Interface = interface;
      }
      # IPv6 multicast is joined by interface only (conntrackd ignores
      # IPv6_interface with a warning).
      // optionalAttrs (!isV6 multicastGroup) { IPv4_interface = localAddress; }
    else if transport == "UDP" || transport == "TCP" then
      if peerAddress == null then
        throw "ctsyncd: transport ${transport} needs peerAddress"
      else
        {
          "${family localAddress}_address" = localAddress;
          "${family peerAddress}_Destination_Address" = peerAddress;
          Port = port;
          Interface = interface;
        }
    else
      throw "ctsyncd: transport must be Multicast, UDP or TCP, not ${transport}";

  typed = {
    General = {
      HashLimit = hashLimit;
      LogFile = if logFile == null then "off" else logFile;
      Syslog = syslog;
      Systemd = true;
      LockFile = lockFile;
      UNIX.Path = socketPath;
      NetlinkBufferSize = netlinkBufferSize;
      NetlinkBufferSizeMaxGrowth = netlinkBufferSizeMaxGrowth;
      "Filter From Userspace"."Address Ignore" =
        optionalAttrs (addressesOf "IPv4" != [ ]) { IPv4_address = addressesOf "IPv4"; }
        // optionalAttrs (addressesOf "IPv6" != [ ]) { IPv6_address = addressesOf "IPv6"; };
    }
    // optionalAttrs (hashSize != null) { HashSize = hashSize; };
    Sync = {
      "Mode ${mode}" = { };
      "${transport} Default" = link;
      Options = {
        ExpectationSync =
          if isList expectationSync then
            builtins.listToAttrs (map (h: {
              name = h;
              value = null;
            }) expectationSync)
          else
            expectationSync;
      }
      // optionalAttrs (authenticationKeyFile != null) { AuthenticationKeyFile = authenticationKeyFile; };
    };
  };

  merge =
    a: b:
    a
    // mapAttrs (k: v: if isAttrs v && isAttrs (a.${k} or null) then merge a.${k} v else v) b;

  extras = {
    "/General" = extraGeneral;
    "/Sync" = extraSync;
    "/Sync/Mode ${mode}" = modeOptions;
  };

  indent = depth: concatStringsSep "" (builtins.genList (_: "  ") depth);

  clause =
    path: depth: key: value:
    let
      pad = indent depth;
      here = "${path}/${key}";
      extra = extras.${here} or "";
    in
    if value == null then
      [ "${pad}${key}" ]
    else if isBool value then
      [ "${pad}${key} ${onOff value}" ]
    else if isInt value then
      [ "${pad}${key} ${toString value}" ]
    else if isString value then
      [ "${pad}${key} ${value}" ]
    else if isList value then
      builtins.concatLists (map (clause path depth key) value)
    else if isAttrs value then
      [ "${pad}${key} {" ]
      ++ block here (depth + 1) value
      ++ (if extra == "" then [ ] else [ extra ])
      ++ [ "${pad}}" ]
    else
      throw "ctsyncd: ${here}: cannot render a ${builtins.typeOf value}";

  block =
    path: depth: attrs:
    builtins.concatLists (map (k: clause path depth k attrs.${k}) (attrNames attrs));
in
concatStringsSep "\n" (
  [ "# Generated by the ctsyncd NixOS module." ] ++ block "" 0 (merge typed settings)
)
+ "\n"
