#!/usr/bin/env bash
# `make run`: builds the image, starts the simulated world on the host and
# boots the appliance in QEMU with its serial console on this terminal.
# The appliance's only NIC is on the virtual LAN of `sms-sim lan` (SMS_NET,
# default lan; `user` for QEMU user networking) with SMS_DEVICES simulated
# devices (default 50), which it takes over once up (qemu/lan-watch.sh).
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
net=${SMS_NET:-lan}
devices=${SMS_DEVICES:-50}
fleet_admin=$((base + 99))
summary=$out/lan-summary.log
if [ "$net" = lan ]; then
  rm -f "$out/lan.sock"
  "$top/target/release/sms-sim" lan --socket "$out/lan.sock" --dir "$out/lan" --world "$out/world" \
    --trust-root "$out/world/trust-root.json" --devices "$devices" --port-base "$base" \
    --admin-port "$fleet_admin" >"$out/lan.log" 2>&1 &
  lan=$!
  for _ in $(seq 100); do [ -S "$out/lan.sock" ] && break; sleep 0.1; done
  [ -S "$out/lan.sock" ] || { echo "qemu/run.sh: sms-sim lan did not start:" >&2; cat "$out/lan.log" >&2; exit 1; }
  "$top/qemu/lan-watch.sh" "$out/dev-key" "$base" "$fleet_admin" >"$summary" 2>&1 &
  watch=$!
  trap 'kill $world $lan $watch 2>/dev/null || true; pkill -P $world 2>/dev/null || true; echo; echo "The cycle on the LAN ($summary):"; cat "$summary"' EXIT
fi
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
  network       : $net$( [ "$net" = lan ] && printf '%s' ": the virtual LAN 192.0.2.0/24 (gateway .1 with DHCP, appliance .2,
                  $devices devices from .10, taken over once the appliance is up); the cycle, line by line:
                  tail -f $summary   (printed again when QEMU quits)
                  devices: curl http://127.0.0.1:$fleet_admin/devices; unplug one: curl -X POST http://127.0.0.1:$fleet_admin/devices/ips-00003/unplug")
  quit QEMU     : Ctrl-A then X

MSG
SMS_NET=$net SMS_LAN_SOCKET=$out/lan.sock SMS_DISK=$out/run-disk.img SMS_PORT_BASE=$base "$top/qemu/boot.sh"
