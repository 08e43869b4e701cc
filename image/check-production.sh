#!/usr/bin/env bash
# Checks that the production root file system carries nothing of the
# development layer (image/layers/development.sh): no simulator CA or
# catalog trust root, no community `public`, no SNMPv3 test user, no SSH
# key, no layer marker, no simulated update centre. It builds both roots
# (SMS_ROOTFS_ONLY, the Debian base from the shared cache) and runs the
# same search on each: the production root must come out clean and the
# development root must show every kind of file, so each search is seen
# finding what it looks for.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/sms-check-production.XXXXXX)
trap 'rm -rf "$work"' EXIT
export SMS_CACHE=${SMS_CACHE:-$top/out/cache}

(cd "$top" && cargo build -q --release -p sms-sim)
# The vendor's trust for this check: fresh keys, not the simulated world's.
"$top/target/release/sms-sim" keys --dir "$work/vendor" >/dev/null
world=$top/out/world

echo "== production root file system"
SMS_LAYER=production SMS_ROOTFS_ONLY=1 SMS_OUT=$work/production \
  SMS_TMC_CA=$work/vendor/ca.pem SMS_TRUST_ROOT=$work/vendor/trust-root.json \
  "$top/image/build.sh" >"$work/production.log" 2>&1 || { cat "$work/production.log"; exit 1; }
tail -n 1 "$work/production.log"
echo "== development root file system"
ssh-keygen -q -t ed25519 -N "" -f "$work/dev-key"
SMS_LAYER=development SMS_ROOTFS_ONLY=1 SMS_OUT=$work/development SMS_DEV_KEY=$work/dev-key.pub \
  "$top/image/build.sh" >"$work/development.log" 2>&1 || { cat "$work/development.log"; exit 1; }
tail -n 1 "$work/development.log"

# Prints one line per kind of development file found under root $1.
development_files() {
  local r=$1 line
  line=$(sed -n 2p "$world/ca.pem")
  grep -rlF -- "$line" "$r/etc" "$r/usr/share/sms" 2>/dev/null | sed 's/^/simulator CA: /' | head -n 1
  cmp -s "$world/trust-root.json" "$r/etc/sms/trust-root.json" && echo "simulator trust root: /etc/sms/trust-root.json"
  # Settings, not the commented examples.
  for f in "$r"/etc/sms/*.toml; do
    grep -v '^[[:space:]]*#' "$f" | grep -q '"public"' && echo "community public: ${f#"$r"}"
    grep -v '^[[:space:]]*#' "$f" | grep -q '"noc"' && echo "SNMPv3 test user noc: ${f#"$r"}"
  done | sort -t: -u -k1,1
  grep -rlF 'sim.test' "$r/etc" 2>/dev/null | sed 's/^/simulated update centre: /' | head -n 1
  for k in "$r/root/.ssh/authorized_keys" "$r"/etc/ssh/authorized_keys/*; do
    [ -e "$k" ] && echo "SSH key: ${k#"$r"}"
  done
  [ -e "$r/etc/sms/image-layer" ] && echo "layer marker: /etc/sms/image-layer"
  return 0
}

fail=0
found=$(development_files "$work/production/rootfs")
if [ -z "$found" ]; then
  echo "ok   - the production root carries no development file"
else
  echo "FAIL - the production root carries development files:"
  sed 's/^/       /' <<<"$found"
  fail=1
fi
if cmp -s "$work/vendor/ca.pem" "$work/production/rootfs/etc/sms/tmc-ca.pem" &&
  cmp -s "$work/vendor/trust-root.json" "$work/production/rootfs/etc/sms/trust-root.json"; then
  echo "ok   - the production root trusts the vendor's CA and catalog root it was given"
else
  echo "FAIL - the production root does not carry the vendor's CA and trust root"
  fail=1
fi
found=$(development_files "$work/development/rootfs")
kinds=$(cut -d: -f1 <<<"$found" | sort -u | wc -l)
if [ "$kinds" -eq 7 ]; then
  echo "ok   - the same search finds all 7 kinds in the development root"
else
  echo "FAIL - the search found $kinds of 7 kinds in the development root (it would miss them in production):"
  sed 's/^/       /' <<<"$found"
  fail=1
fi
[ "$fail" -eq 0 ] && echo "check-production: PASSED" || echo "check-production: FAILED"
exit "$fail"
