#!/usr/bin/env bash
# Takes the devices of `sms-sim lan` over for an appliance on the segment,
# as an administrator does: enrols the appliance's client certificate with
# the devices (they accept it from then on), then registers every device
# in the appliance's inventory through the CLI (one command file over SSH).
# Prints "enrolled ..." and then one "device ... added" line per device.
# Usage: lan-enrol.sh KEY PORT_BASE FLEET_ADMIN_PORT [GROUP]
set -euo pipefail
key=$1
base=$2
admin=$3
group=${4:-lan}
ssh_opts=(-p "$((base + 22))" -i "$key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
  -o LogLevel=ERROR -o ConnectTimeout=5 -o BatchMode=yes)
timeout 60 ssh "${ssh_opts[@]}" root@127.0.0.1 cat /var/lib/sms/distd/tls/client.pem |
  curl -sS --max-time 10 --data-binary @- "http://127.0.0.1:$admin/enrol"
curl -sS --max-time 10 "http://127.0.0.1:$admin/devices" | python3 -c '
import json, sys
for d in json.load(sys.stdin):
    d = d["device"]
    print("devices add %s address %s platform %s group %s" % (d["name"], d["address"], d["family"].lower(), sys.argv[1]))
' "$group" | timeout 300 ssh "${ssh_opts[@]}" -T admin@127.0.0.1
