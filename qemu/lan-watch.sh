#!/usr/bin/env bash
# `make run` on the virtual LAN: once the appliance answers SSH, takes the
# simulated devices over (qemu/lan-enrol.sh), then writes one line whenever
# the cycle moves on: DV active, distribution jobs, devices on the new
# version, traps received, devices synchronised to the appliance's NTP,
# devices the poller reaches. Runs until killed.
# Usage: lan-watch.sh KEY PORT_BASE FLEET_ADMIN_PORT
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
key=$1
base=$2
admin=$3
ssh_opts=(-p "$((base + 22))" -i "$key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
  -o LogLevel=ERROR -o ConnectTimeout=5 -o BatchMode=yes)
say() { echo "$(date +%H:%M:%S) $*"; }
until timeout 20 ssh "${ssh_opts[@]}" root@127.0.0.1 true 2>/dev/null; do sleep 5; done
say "appliance up on the segment (192.0.2.2 by DHCP)"
out=$("$top/qemu/lan-enrol.sh" "$key" "$base" "$admin" lan 2>&1)
say "$(head -n 1 <<<"$out"); $(grep -c 'added to group' <<<"$out") devices registered in group lan"
cli() { printf '%s | json\n' "$1" | timeout 60 ssh "${ssh_opts[@]}" -T admin@127.0.0.1 2>/dev/null; }
# The first JSON value in the input (the CLI prints its banner before it).
py() {
  python3 -c "
import json, re, sys
t = sys.stdin.read()
m = re.search(r'^[\[{]', t, re.M)
d = json.JSONDecoder().raw_decode(t[m.start():])[0]
print($1)" 2>/dev/null
}
last=""
while sleep 15; do
  dv=$(cli 'show update' | py 'd.get("active_dv") or "none"')
  jobs=$(cli 'show distribution jobs' | py '"; ".join("job %s %s %s: %s" % (j["id"], j["channel"], j["version"], j["state"]) for j in d[-3:]) or "no jobs"')
  fleet=$(curl -s --max-time 10 "http://127.0.0.1:$admin/devices" | python3 -c '
import json, sys
d = json.load(sys.stdin)
on = sum(1 for x in d if x["status"].get("dv") == sys.argv[1])
synced = sum(1 for x in d if x["status"].get("time"))
print("devices on DV %s: %d of %d; synchronised to the appliance: %d" % (sys.argv[1], on, len(d), synced))
' "$dv" 2>/dev/null)
  snmp=$(cli 'show snmp' | py '"traps received %d; poller: %d polled, %d unreachable" % (d["traps_received"], d["devices_polled"], d["devices_unreachable"])')
  line="active DV $dv | $jobs | $fleet | $snmp"
  [ "$line" != "$last" ] && say "$line"
  last=$line
done
