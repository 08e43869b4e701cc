#!/usr/bin/env bash
# Builds the SMS OS disk image offline from Debian packages (mmdebstrap),
# with the same rootfs-overlay and board files as the Buildroot build.
#
# Output in $SMS_OUT (default out/):
#   disk.img        raw GPT disk: sms-efi | sms-boot | sms-root-a | sms-root-b | sms-data
#   disk.img.zst    the same, compressed: what is flashed
#   disk.img.bmap   its block map (bmaptool copy writes only the used blocks)
#   SHA256SUMS      SHA-256 of disk.img.zst and disk.img.bmap
#   vmlinuz, initrd.img   for direct QEMU boots (also on sms-boot)
#   rootfs/         the root file system tree (input of slot images)
#
# Layers (SMS_LAYER):
#   production   [default] what is flashed: the vendor's update-centre CA and
#                catalog trust root (SMS_TMC_CA, SMS_TRUST_ROOT: required), the
#                shipped configuration, no community, no test account, no key.
#   development  production plus image/layers/development.sh (`make run`, the
#                boot test): the simulated world's CA and trust root (out/world,
#                made once by `sms-sim keys`), the QEMU world's configuration
#                (qemu/world/*.toml) and SMS_DEV_KEY for root and admin.
# image/check-production.sh checks a production root for development files.
#
# Environment:
#   SMS_LAYER=production|development
#   SMS_TMC_CA=FILE.pem, SMS_TRUST_ROOT=FILE.json   production trust (required)
#   SMS_DEV_KEY=FILE.pub   development: this key may log in as root and admin
#   SMS_WORLD_DIR=DIR      development: the simulated world's keys [out/world]
#   SMS_ROOTFS_ONLY=1      stop after the root file system (checks)
#   SMS_CACHE=DIR          cache of the Debian base [out/cache]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=${SMS_OUT:-$top/out}
board=$top/board/sms-x86_64
started=$(date +%s)
step() { printf '==> [%3ss] %s\n' "$(( $(date +%s) - started ))" "$*"; }

[ "$(id -u)" -eq 0 ] || { echo "image/build.sh: needs root (mmdebstrap, file ownership)" >&2; exit 1; }
cache=${SMS_CACHE:-$top/out/cache}
mkdir -p "$out" "$cache"
layer=${SMS_LAYER:-production}
case "$layer" in
  production)
    for v in SMS_TMC_CA SMS_TRUST_ROOT; do
      [ -s "${!v:-}" ] || { echo "image/build.sh: a production image needs the vendor's trust: $v=FILE (or SMS_LAYER=development for the simulated world)" >&2; exit 1; }
    done
    [ -z "${SMS_DEV_KEY:-}" ] || { echo "image/build.sh: SMS_DEV_KEY belongs to the development layer (SMS_LAYER=development)" >&2; exit 1; } ;;
  development) ;;
  *) echo "image/build.sh: SMS_LAYER is production or development, not $layer" >&2; exit 1 ;;
esac

step "building the daemons (release)"
export SMS_BUILD="${SMS_BUILD:-$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)}"
(cd "$top" && cargo build -q --release -p sms-updated -p sms-ntpd -p sms-distd -p sms-snmpd -p sms-cli -p sms-apply -p sms-logd -p sms-had -p sms-backup -p sms-sim)
world=${SMS_WORLD_DIR:-$top/out/world}
if [ "$layer" = development ]; then "$top/target/release/sms-sim" keys --dir "$world" >/dev/null; fi

# Debian packages of the appliance (board/sms-x86_64/packages.txt), cached
# by the hash of that list.
packages=$(grep -v '^#' "$board/packages.txt" | xargs | tr ' ' ',')
hash=$(printf '%s' "$packages" | sha256sum | cut -c1-16)
base=$cache/base-$hash.tar
if [ ! -s "$base" ]; then
  step "root file system from Debian packages (mmdebstrap)"
  mmdebstrap --quiet --format=tar --variant=minbase --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    bookworm "$base.tmp"
  mv "$base.tmp" "$base"
else
  step "root file system: cached $(basename "$base")"
fi

root=$out/rootfs
rm -rf "$root"
mkdir -p "$root"
tar -C "$root" -xf "$base"

step "installing the appliance's files"
cp -a "$top/rootfs-overlay/." "$root/"
install -m 0755 "$top/target/release/sms-updated" "$top/target/release/sms-ntpd" "$top/target/release/sms-distd" "$top/target/release/sms-snmpd" "$top/target/release/sms-logd" "$top/target/release/sms-had" "$top/target/release/sms-cli" "$top/target/release/sms-audit-writer" "$top/target/release/sms-apply-settings" "$top/target/release/sms-backup" "$root/usr/bin/"
install -D -m 0644 "$top/README.md" "$root/usr/share/doc/sms/README.md"
install -D -m 0644 "$top/mibs/SMS-MIB.txt" "$root/usr/share/snmp/mibs/SMS-MIB.txt"
"$board/post-build.sh" "$root"
"$board/post-fakeroot.sh" "$root"

if [ "$layer" = development ]; then
  step "development layer (image/layers/development.sh)"
  "$top/image/layers/development.sh" "$root" "$world"
else
  install -m 0644 "$SMS_TMC_CA" "$root/etc/sms/tmc-ca.pem"
  install -m 0644 "$SMS_TRUST_ROOT" "$root/etc/sms/trust-root.json"
fi
if [ -n "${SMS_ROOTFS_ONLY:-}" ]; then
  step "root file system ($layer) in $root"
  exit 0
fi

step "kernel and initramfs"
kver=$(basename "$(ls -d "$root"/lib/modules/*)")
cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
# Debian's generic kernel has the drivers of x86 server hardware; what an
# appliance in a rack never has goes (sound, graphics, cameras and TV,
# wireless, Bluetooth, InfiniBand, industrial I/O, staging drivers, file
# systems it never mounts): about 390 MiB of modules become about 190.
moddir=$root/lib/modules/$kver
for d in sound drivers/gpu drivers/media drivers/net/wireless drivers/infiniband drivers/iio \
  drivers/staging drivers/comedi drivers/isdn drivers/bluetooth drivers/mtd drivers/target \
  net/wireless net/mac80211 net/bluetooth \
  fs/9p fs/adfs fs/affs fs/afs fs/befs fs/bfs fs/btrfs fs/ceph fs/coda fs/dlm fs/ecryptfs fs/efs \
  fs/f2fs fs/freevxfs fs/gfs2 fs/hfs fs/hfsplus fs/hpfs fs/jffs2 fs/jfs fs/minix fs/nfs fs/nfsd \
  fs/nilfs2 fs/ocfs2 fs/omfs fs/orangefs fs/qnx4 fs/qnx6 fs/reiserfs fs/romfs fs/smb fs/cifs \
  fs/sysv fs/ubifs fs/ufs fs/vboxsf fs/xfs fs/zonefs; do
  rm -rf "${moddir:?}/kernel/$d"
done
chroot "$root" depmod "$kver"
ird=$out/initramfs.d
rm -rf "$ird"
mkdir -p "$ird/bin" "$ird/lib/modules" "$ird/proc" "$ird/sys" "$ird/dev" "$ird/newroot" "$ird/boot-state"
if ldd /bin/busybox >/dev/null 2>&1; then
  echo "image/build.sh: /bin/busybox is dynamically linked; the initramfs needs busybox-static" >&2
  exit 1
fi
cp /bin/busybox "$ird/bin/busybox"
for app in $("$ird/bin/busybox" --list); do [ "$app" = busybox ] || ln -sf busybox "$ird/bin/$app"; done
# The drivers of the disks and NICs of x86 servers and VMs, and of a USB
# stick (an installer), with everything they depend on, in load order
# (modules.dep); one that is not in the kernel as a module (built in) is
# skipped.
declare -A seen=()
order=()
add_module() {
  local m=$1 d
  [ -n "${seen[$m]:-}" ] && return
  seen[$m]=1
  for d in $(grep "^$m:" "$moddir/modules.dep" | cut -d: -f2); do add_module "$d"; done
  order+=("$m")
}
# ext4 first (a module in the generic kernel), with the CRC32C its metadata
# checksums need (a soft dependency: not in modules.dep).
for name in crc32c_intel crc32c_generic ext4 \
  virtio_pci virtio_blk virtio_scsi ahci sd_mod nvme megaraid_sas mpt3sas hpsa smartpqi \
  aacraid usb_storage uas xhci_pci ehci_pci e1000e igb ixgbe i40e virtio_net; do
  path=$(grep -E "/${name//_/[-_]}\.ko:" "$moddir/modules.dep" | cut -d: -f1 || true)
  [ -n "$path" ] && add_module "$path"
done
for m in "${order[@]}"; do
  cp "$moddir/$m" "$ird/lib/modules/"
  basename "$m" >>"$ird/lib/modules/order"
done
install -m 0755 "$top/image/initramfs/init" "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) >"$out/initrd.img"
# The root slots carry no kernel of their own: it is on the boot partition.
rm -f "$root"/boot/initrd.img* "$root"/boot/vmlinuz* "$root"/boot/System.map*

step "disk image"
"$board/post-image.sh" "$out"

size_root=$(du -sm "$root" | cut -f1)
step "compressing"
zstd -q -f -T0 -3 "$out/disk.img" -o "$out/disk.img.zst"
step "block map and checksums (what is flashed: README, Flashing)"
bmaptool -q create -o "$out/disk.img.bmap" "$out/disk.img"
(cd "$out" && sha256sum disk.img.zst disk.img.bmap >SHA256SUMS)
printf '\nimage: %s (%s MiB root file system, %s MiB compressed)\nbuild time: %s s\n' \
  "$out/disk.img" "$size_root" "$(( $(stat -c %s "$out/disk.img.zst") / 1048576 ))" "$(( $(date +%s) - started ))"
