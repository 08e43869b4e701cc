#!/usr/bin/env bash
# The development layer: what `make run` and the boot test add to the
# production root file system, and nothing that is flashed carries.
#   - the simulated world's update-centre CA and catalog trust root (made by
#     `sms-sim keys`), instead of the vendor's, and the simulated fleet's CA
#   - the QEMU world's configuration (qemu/world/*.toml): the simulated
#     update centre's name and DNS, upstream NTP on the host, SNMP community
#     `public` and the SNMPv3 test user `noc`
#   - with SMS_DEV_KEY=FILE.pub, that key for root and admin over SSH
#   - /etc/sms/image-layer, which `show version` reports
# Usage: development.sh ROOT WORLD_DIR
set -euo pipefail
root=$1
world=$2
top=$(cd "$(dirname "$0")/../.." && pwd)
install -m 0644 "$world/ca.pem" "$root/etc/sms/tmc-ca.pem"
install -m 0644 "$world/trust-root.json" "$root/etc/sms/trust-root.json"
# The simulated fleet's CA (sms-sim keys): the devices the appliance manages
# on the virtual LAN show certificates it signed.
install -m 0644 "$world/fleet-ca.pem" "$root/etc/sms/fleet-ca.pem"
install -m 0644 "$top/qemu/world/updated.toml" "$top/qemu/world/ntpd.toml" "$top/qemu/world/snmpd.toml" "$root/etc/sms/"
if [ -n "${SMS_DEV_KEY:-}" ]; then
  # sshd reads no key file in a home directory (sshd_config.d/sms.conf).
  install -D -m 0644 "$SMS_DEV_KEY" "$root/etc/ssh/authorized_keys/root"
  install -D -m 0644 "$SMS_DEV_KEY" "$root/etc/ssh/authorized_keys/admin"
fi
echo "development: trusts the simulated update centre; test community and users" >"$root/etc/sms/image-layer"
