#!/usr/bin/env bash
# Starts the simulated world around an appliance in QEMU, on host loopback
# at the fixed ports that the image's configuration names (qemu/world/):
# the update centre (TMC 15443, legacy 15043, CDN 15080, DNS 15053, admin
# 15099; names answered as 10.0.2.2, the host seen from the guest) and three
# upstream NTP servers (15123-15125). Runs until killed.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
world=${SMS_WORLD_DIR:-$top/out/world}
sim=$top/target/release/sms-sim
log=${SMS_WORLD_LOG:-$world/sim.log}
mkdir -p "$world"
"$sim" ntp --bind 127.0.0.1 --port 15123 --offsets 0,0,0 >>"$log" 2>&1 &
ntp=$!
trap 'kill $ntp 2>/dev/null || true' EXIT
"$sim" tmc --dir "$world" --bind 127.0.0.1 --advertise 10.0.2.2 \
  --tmc-port 15443 --legacy-port 15043 --cdn-port 15080 --dns-port 15053 --admin-port 15099 \
  --dv-size "${SMS_DV_SIZE:-8M}" --tos-size "${SMS_TOS_SIZE:-16M}" --cdn-rate "${SMS_CDN_RATE:-4M}" \
  --publish-every "${SMS_PUBLISH_EVERY:-120}" >>"$log" 2>&1
