#!/usr/bin/env bash
# Runs on the finished root file system, after the accounts exist
# (Buildroot: BR2_ROOTFS_POST_FAKEROOT_SCRIPT, after its users tables;
# offline image: image/build.sh after post-build.sh). Argument: the root
# directory.
#
# Passwords live on the data partition (ADR 13): the shadow file as built
# becomes the factory file, and /etc/shadow links to the one the settings
# applier writes at every boot from the factory file and the
# administrator's passwords. The root file system stays read-only.
set -euo pipefail
root=$1
if [ -L "$root/etc/shadow" ]; then
  echo "post-fakeroot.sh: $root/etc/shadow is already a link (run twice?)" >&2
  exit 1
fi
[ -s "$root/etc/shadow" ] || { echo "post-fakeroot.sh: no $root/etc/shadow to keep as the factory file" >&2; exit 1; }
install -D -m 0600 "$root/etc/shadow" "$root/usr/share/sms/factory/shadow"
rm -f "$root/etc/shadow" "$root/etc/shadow-"
ln -s /var/lib/sms/accounts/shadow "$root/etc/shadow"
