#!/usr/bin/env bash
# The appliance on its own LAN (part of the boot test, which runs it with
# the image it built and its simulated world; runs alone after a build
# too). The factory image boots with its only NIC on the virtual Ethernet
# segment of `sms-sim lan`: it leases its address from the gateway's DHCP
# server, reaches the update centre beyond the gateway, and manages the
# simulated devices on the segment (smoltcp hosts with their own MAC and
# address). Checked: the DV downloaded, the devices registered through the
# CLI and a distribution job completed on every one of them, their traps
# stored, their NTP queries answered, every device reachable for the
# poller, and one unplugged device reported unreachable and sent as a trap
# to the network operations centre's manager.
#
# Environment: SMS_KEY (the development key the image was built with,
# required), SMS_LAN_DEVICES [20], SMS_LAN_PORT_BASE [23000],
# SMS_LAN_WORLD [start]: `running` when the world of qemu/world.sh runs
# already (the boot test's), SMS_WORLD_DIR [out/world].
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
key=${SMS_KEY:?SMS_KEY: the private development key the image was built with}
devices=${SMS_LAN_DEVICES:-20}
base=${SMS_LAN_PORT_BASE:-23000}
world=${SMS_WORLD_DIR:-$top/out/world}
sim=$top/target/release/sms-sim
work=$(mktemp -d /tmp/sms-lan-test.XXXXXX)
admin_port=$((base + 99))
trap_port=$((base + 9162))
passed=0
failed=0
qemu_pid=""
lan_pid=""
trapd_pid=""
world_pid=""

cleanup() {
  [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null || true
  [ -n "$lan_pid" ] && kill "$lan_pid" 2>/dev/null || true
  [ -n "$trapd_pid" ] && kill "$trapd_pid" 2>/dev/null || true
  if [ -n "$world_pid" ]; then
    pkill -P "$world_pid" 2>/dev/null || true
    kill "$world_pid" 2>/dev/null || true
  fi
  if [ "$failed" -ne 0 ]; then
    echo "--- sms-sim lan ---"
    tail -n 40 "$work/lan.log" 2>/dev/null || true
    echo "--- last lines of the serial console ---"
    tail -n 60 "$work/serial.log" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

ok() { echo "ok   - $*"; passed=$((passed + 1)); }
bad() { echo "FAIL - $*"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

ssh_opts=(-p "$((base + 22))" -i "$key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
  -o LogLevel=ERROR -o ConnectTimeout=5 -o BatchMode=yes -o ServerAliveInterval=5 -o ServerAliveCountMax=3)
as_root() { timeout 150 ssh "${ssh_opts[@]}" root@127.0.0.1 "$@"; }
as_admin() { timeout 150 ssh "${ssh_opts[@]}" admin@127.0.0.1 "$@"; }
fleet() { curl -s --max-time 10 "http://127.0.0.1:$admin_port$1" "${@:2}"; }
# The first JSON value in the input (the CLI prints its banner before it).
json() {
  python3 -c "
import json, re, sys
t = sys.stdin.read()
m = re.search(r'^[\[{]', t, re.M)
d = json.JSONDecoder().raw_decode(t[m.start():])[0]
print($1)" 2>/dev/null || true
}

[ -x "$sim" ] && [ -s "$top/out/disk.img" ] || { echo "qemu/lan-test.sh: build the image first (image/build.sh)" >&2; exit 1; }
if [ "${SMS_LAN_WORLD:-start}" != running ]; then
  SMS_WORLD_LOG=$work/world.log SMS_DV_SIZE=1M SMS_PUBLISH_EVERY=100000 "$top/qemu/world.sh" &
  world_pid=$!
fi

# The network operations centre's manager, on the host, beyond the gateway
# as 10.0.2.2:$trap_port.
printf 'authCommunity log public\n' >"$work/snmptrapd.conf"
SNMP_PERSISTENT_DIR=$work MIBS='' snmptrapd -f -C -c "$work/snmptrapd.conf" -On -Lf "$work/traps.log" \
  "udp:127.0.0.1:$trap_port" >/dev/null 2>&1 &
trapd_pid=$!

echo "== the appliance on its LAN: $devices devices, a gateway with DHCP and the world beyond it"
"$sim" lan --socket "$work/lan.sock" --dir "$work/fleet" --world "$world" --trust-root "$world/trust-root.json" \
  --devices "$devices" --port-base "$base" --admin-port "$admin_port" --install-delay-ms 500 \
  --world-udp "15053,15123,15124,15125,$trap_port" >"$work/lan.log" 2>&1 &
lan_pid=$!
for _ in $(seq 100); do [ -S "$work/lan.sock" ] && break; sleep 0.1; done
check "sms-sim lan made the segment ($work/lan.sock)" test -S "$work/lan.sock"

cp --sparse=always "$top/out/disk.img" "$work/disk.img"
t0=$(date +%s.%N)
SMS_NET=lan SMS_LAN_SOCKET=$work/lan.sock SMS_CPUS=2 SMS_DISK=$work/disk.img SMS_SERIAL=$work/serial.log \
  SMS_PORT_BASE=$base "$top/qemu/boot.sh" >"$work/qemu.out" 2>&1 &
qemu_pid=$!
up=""
for _ in $(seq 300); do
  if timeout 20 ssh "${ssh_opts[@]}" root@127.0.0.1 true 2>/dev/null; then up=yes; break; fi
  kill -0 "$qemu_pid" 2>/dev/null || break
  sleep 1
done
[ -n "$up" ] || { bad "the appliance came up on the segment (SSH through the workstation's forward)"; cat "$work/qemu.out"; exit 1; }
state=$(as_root 'timeout 120 systemctl is-system-running --wait' 2>/dev/null || true)
t1=$(date +%s.%N)
echo "     boot on the segment: $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") s to all units active ($state)"

net=$(as_root 'ip -4 -o addr show scope global; ip route show default' 2>&1 | tr '\n' ' ')
check "the appliance leased 192.0.2.2/24 from the gateway's DHCP server, its default route via 192.0.2.1 (got: $net)" \
  bash -c 'grep -q "inet 192.0.2.2/24" <<<"$1" && grep -q "default via 192.0.2.1" <<<"$1"' _ "$net"

# The trap destination first: committing it restarts sms-snmpd, which
# would forget what the poller saw.
out=$(printf 'configure\nset snmp trap-destination 10.0.2.2 port %s community public\ncommit\nexit\n' "$trap_port" | as_admin -T 2>&1 || true)
check "the manager beyond the gateway is committed as a trap destination" grep -q "sms-snmpd.service restarted" <<<"$out"

active_dv() {
  as_root busctl --json=short call org.smsos.Updater1 /org/smsos/Updater1 org.smsos.Updater1 Status 2>/dev/null |
    python3 -c 'import json,sys; print(json.loads(json.load(sys.stdin)["data"][0]).get("active_dv") or "")' 2>/dev/null || true
}
dv=""
for _ in $(seq 120); do dv=$(active_dv); [ -n "$dv" ] && break; sleep 2; done
check "the DV came from the update centre beyond the gateway and is active (got: ${dv:-none})" test -n "$dv"

# The devices take the appliance's client certificate (the administrator
# enrols it when taking them over) and are registered through the CLI; the
# appliance trusts their CA (the development image's fleet CA).
out=$("$top/qemu/lan-enrol.sh" "$key" "$base" "$admin_port" lan 2>&1 || true)
check "the appliance's client certificate is enrolled with the devices (got: $(head -n 1 <<<"$out"))" grep -q "^enrolled" <<<"$out"
added=$(grep -c "added to group lan" <<<"$out" || true)
check "the $devices devices are registered through the CLI (got: $added added)" test "$added" = "$devices"

job=$(printf 'distribute dv %s to all | json\n' "$dv" | as_admin -T 2>/dev/null | json 'd["id"]')
report=""
for _ in $(seq 150); do
  report=$(printf 'job status %s | json\n' "${job:-0}" | as_admin -T 2>/dev/null || true)
  [ "$(json 'd["state"]' <<<"$report")" != running ] && break
  sleep 2
done
done_count=$(json 'd["counts"].get("done", 0)' <<<"$report")
check "distribution job ${job:-?} completed on all $devices devices (got: $(json 'd["state"], d["counts"]' <<<"$report"))" \
  test "$done_count" = "$devices"
versions() { fleet /devices | json "sum(1 for x in d if x['status'].get('dv') == '$dv')"; }
n=""
for _ in $(seq 30); do n=$(versions); [ "$n" = "$devices" ] && break; sleep 1; done
check "every device reports DV $dv installed (got: ${n:-?})" test "$n" = "$devices"

events() { printf 'show events | json\n' | as_admin -T 2>/dev/null | json "sum(1 for e in d if str(e.get('source', '')).startswith('192.0.2.'))"; }
n=""
for _ in $(seq 30); do n=$(events); [ "${n:-0}" -gt 0 ] 2>/dev/null && break; sleep 2; done
check "traps from the devices are stored on the appliance (got: ${n:-none} of the last events from 192.0.2.x)" \
  test "${n:-0}" -gt 0

synced() { fleet /devices | json "sum(1 for x in d if (x['status'].get('time') or {}).get('server') == '192.0.2.2:123')"; }
n=""
for _ in $(seq 90); do n=$(synced); [ "$n" = "$devices" ] && break; sleep 2; done
check "every device synchronised its clock with the appliance's NTP service (got: ${n:-?})" test "$n" = "$devices"

snmp_status() { printf 'show snmp | json\n' | as_admin -T 2>/dev/null | json "$1"; }
polled=""
for _ in $(seq 60); do
  polled=$(snmp_status 'd["devices_polled"], d["devices_unreachable"]')
  [ "$polled" = "$devices 0" ] && break
  sleep 2
done
check "the poller reaches every device (got polled, unreachable: ${polled:-?})" test "$polled" = "$devices 0"

gone=ips-00003
out=$(fleet "/devices/$gone/unplug" -X POST || true)
check "the simulator pulls $gone's cable (got: $out)" grep -q unplugged <<<"$out"
unreach=""
for _ in $(seq 90); do
  unreach=$(snmp_status 'd["devices_unreachable"]')
  [ "$unreach" = 1 ] && grep -q "$gone" "$work/traps.log" 2>/dev/null && break
  sleep 2
done
check "the poller finds $gone unreachable (got: ${unreach:-?})" test "$unreach" = 1
check "the unreachable device is sent as a trap to the manager beyond the gateway" \
  bash -c 'grep -q "$1" "$2" && grep -q "unreachable" "$2"' _ "$gone" "$work/traps.log"

c=$(grep -c . "$work/traps.log" 2>/dev/null || true)
echo "     manager's log: ${c:-0} lines; segment: $(grep -c 'joined as port' "$work/lan.log" || true) QEMU port(s)"
timeout 20 ssh "${ssh_opts[@]}" root@127.0.0.1 'systemctl poweroff' 2>/dev/null || true
for _ in $(seq 60); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 1; done
if kill -0 "$qemu_pid" 2>/dev/null; then bad "the appliance on the segment powered off within 60 s"; else qemu_pid=""; fi

echo "lan-test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
