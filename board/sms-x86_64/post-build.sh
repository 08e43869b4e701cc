#!/usr/bin/env bash
# Runs on the assembled root file system (Buildroot: BR2_ROOTFS_POST_BUILD_SCRIPT;
# offline image: image/build.sh). Argument: the root directory.
set -euo pipefail
root=$1

# Mount points must exist in the image: the root file system is read-only.
install -d "$root/var/lib/sms" "$root/var/lib/systemd" "$root/var/cache" "$root/var/log" "$root/var/tmp"

grep -qx /usr/bin/sms-cli "$root/etc/shells" 2>/dev/null || echo /usr/bin/sms-cli >>"$root/etc/shells"
if [ -z "${BR2_CONFIG:-}" ]; then
  # Offline image: users from sysusers.d, created now since the root file
  # system is read-only (Buildroot creates them from board users.table).
  systemd-sysusers --root="$root"
  # Default administrator password (changed at first login); root has none.
  echo 'admin:admin' | chpasswd --root "$root"
  passwd --root "$root" -l root >/dev/null
fi

# sshd: host keys are made per appliance on the data partition, never
# shipped; no sftp subsystem, no environment from clients.
rm -f "$root"/etc/ssh/ssh_host_*
sed -i -e '/^Subsystem/d' -e '/^AcceptEnv/d' "$root/etc/ssh/sshd_config"
# The appliance's settings (sshd_config.d/sms.conf) come first, so they win;
# Debian's file includes the directory, upstream's (Buildroot) does not.
grep -q '^Include /etc/ssh/sshd_config.d/\*.conf' "$root/etc/ssh/sshd_config" ||
  sed -i '1i Include /etc/ssh/sshd_config.d/*.conf' "$root/etc/ssh/sshd_config"

# What a person sees before logging in: the appliance, not the base
# distribution's issue text and licence notice.
cat >"$root/etc/issue" <<'ISSUE'
SMS OS - Security Management System appliance
Console login: admin. Type help after logging in.

ISSUE
cp "$root/etc/issue" "$root/etc/issue.net"
: >"$root/etc/motd"
rm -rf "$root/etc/update-motd.d"

# PAM reads no environment file the user owns (~/.pam_environment): an
# administrator's session gets only what the appliance sets.
for f in "$root"/etc/pam.d/*; do
  [ -f "$f" ] && sed -i -e 's/\buser_readenv=1\b/user_readenv=0/' "$f"
done

# Network: the management interface by DHCP until the administrator sets it.
install -d "$root/etc/systemd/network"
cat >"$root/etc/systemd/network/50-management.network" <<NET
[Match]
Name=en* eth*

[Network]
DHCP=yes
NET
printf '127.0.0.1 localhost\n127.0.1.1 sms\n' >"$root/etc/hosts"
# The time zone the administrator sets (root is read-only): a link the
# settings applier points into /usr/share/zoneinfo; dangling means UTC.
ln -sfn /var/lib/sms/system/localtime "$root/etc/localtime"
: >"$root/etc/machine-id"

# Units to start (Buildroot's host systemctl or the build host's).
systemctl --root="$root" enable \
  systemd-networkd.service nftables.service ssh.service serial-getty@ttyS0.service \
  sms-data-setup.service sms-ssh-keys.service \
  sms-updated.service sms-ntpd.service sms-distd.service sms-snmpd.service sms-logd.service sms-had.service sms-health.service \
  sms-settings.path sms-settings-boot.service sms-audit.socket sms-backup.socket \
  sms-backup-scheduled.timer >/dev/null 2>&1
systemctl --root="$root" mask systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
  e2scrub_all.timer e2scrub_reap.service fstrim.timer >/dev/null 2>&1 || true
systemctl --root="$root" set-default multi-user.target >/dev/null
