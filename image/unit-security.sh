#!/usr/bin/env bash
# Exposure of every SMS unit as systemd-analyze rates it (0 = locked down,
# 10 = unprotected), read offline from rootfs-overlay: each unit must be at
# 2.0 or below. Prints one line per unit and fails naming the units above.
# Usage: image/unit-security.sh [UNIT_FILE...]  (default: every sms-*.service)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
limit=${SMS_EXPOSURE_LIMIT:-2.0}
units=("$@")
if ((${#units[@]} == 0)); then
  units=("$root"/rootfs-overlay/usr/lib/systemd/system/sms-*.service)
fi
threshold=$(awk -v l="$limit" 'BEGIN { printf "%d", l * 10 + 0.5 }')
over=()
for u in "${units[@]}"; do
  out=$(systemd-analyze security --offline=yes --threshold="$threshold" "$u" 2>&1) && rc=0 || rc=$?
  level=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' | tail -1)
  if [ -z "$level" ]; then
    echo "unit security: cannot rate $(basename "$u"):" >&2
    printf '%s\n' "$out" >&2
    exit 1
  fi
  printf '  %-28s exposure %s\n' "$(basename "$u")" "$level"
  [ "$rc" -eq 0 ] || over+=("$(basename "$u") ($level)")
done
if ((${#over[@]})); then
  echo "unit security: FAILED: above $limit: ${over[*]}"
  exit 1
fi
echo "unit security: every unit at $limit or below"
