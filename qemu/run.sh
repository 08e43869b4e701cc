#!/usr/bin/env bash
# `make run`: builds the image, starts the simulated world on the host and
# boots the appliance in QEMU with its serial console on this terminal.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=$top/out
mkdir -p "$out"
[ -f "$out/dev-key" ] || ssh-keygen -q -t ed25519 -N "" -C "sms development key" -f "$out/dev-key"
SMS_LAYER=development SMS_DEV_KEY=$out/dev-key.pub "$top/image/build.sh"

world_log=$out/world/sim.log
mkdir -p "$out/world"
: >"$world_log"
"$top/qemu/world.sh" &
world=$!
trap 'kill $world 2>/dev/null || true; pkill -P $world 2>/dev/null || true' EXIT

cp --sparse=always "$out/disk.img" "$out/run-disk.img"
base=${SMS_PORT_BASE:-10000}
cat <<MSG

  SMS OS in QEMU (TCG: about 30-40 s to the login prompt)
  --------------------------------------------------------
  console login : admin / admin on this terminal, the first time: the setup asks for a new
                  password (SSH takes passwords only after that; the key below works at once)
  SSH           : ssh -p $((base + 22)) -i out/dev-key admin@127.0.0.1
  root (dev)    : ssh -p $((base + 22)) -i out/dev-key root@127.0.0.1   (development images only)
  forwarded     : HTTP $((base + 80)), HTTPS $((base + 443)), SNMP udp $((base + 161)), traps udp $((base + 8162)), NTP udp $((base + 123))
  SNMP          : MIBS= snmpwalk -v3 -l authPriv -u noc -a SHA-256 -A noc-auth-pass -x AES -X noc-priv-pass \\
                    -M mibs:mibs/base -m SMS-MIB udp:127.0.0.1:$((base + 161)) SMS-MIB::smsMIB
                  (v2c: -v2c -c public; traps: snmptrap -v2c -c public udp:127.0.0.1:$((base + 8162)) ...)
  update centre : sms-sim on this host (log: $world_log); the appliance fetches and activates its DV
                  watch it: ssh ... root@127.0.0.1 journalctl -fu sms-updated
  quit QEMU     : Ctrl-A then X

MSG
SMS_DISK=$out/run-disk.img SMS_PORT_BASE=$base "$top/qemu/boot.sh"
