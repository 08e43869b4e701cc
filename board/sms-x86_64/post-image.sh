#!/usr/bin/env bash
# Lays out the disk of the offline image (image/build.sh). Argument: the
# output directory holding rootfs/, vmlinuz and initrd.img. In disk order:
#   p5 sms-efi     32 MiB  FAT: GRUB (EFI/BOOT/BOOTX64.EFI, the removable-media
#                          path UEFI firmware boots with no boot entry) and
#                          its configuration (board/sms-x86_64/grub-efi-image.cfg)
#   p1 sms-boot    64 MiB  ext4: slot.env (A/B boot counter), kernel, initramfs
#   p2 sms-root-a  1 GiB   ext4, mounted read-only
#   p3 sms-root-b  1 GiB   ext4, mounted read-only (empty until an update)
#   p4 sms-data    512 MiB blank: formatted on first boot, grows with the disk
# Partitions are 1 MiB aligned; the slots have room to grow across updates.
# The EFI partition is number 5 but first on the disk: the other numbers
# stay what the initramfs, the slot tool and earlier disks know.
set -euo pipefail
out=$1
img=$out/disk.img
MiB=$((1024 * 1024))
board=$(cd "$(dirname "$0")" && pwd)
esp_start=1 esp_size=32
boot_start=$((esp_start + esp_size)) boot_size=64
a_start=$((boot_start + boot_size)) slot_size=1024
b_start=$((a_start + slot_size))
data_start=$((b_start + slot_size)) data_size=512
total=$((data_start + data_size + 1))

rm -f "$img"
truncate -s $((total * MiB)) "$img"
sfdisk --quiet "$img" <<PARTS
label: gpt
${img}1 : start=${boot_start}MiB, size=${boot_size}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="sms-boot"
${img}2 : start=${a_start}MiB, size=${slot_size}MiB, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="sms-root-a"
${img}3 : start=${b_start}MiB, size=${slot_size}MiB, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="sms-root-b"
${img}4 : start=${data_start}MiB, size=${data_size}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="sms-data"
${img}5 : start=${esp_start}MiB, size=${esp_size}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="sms-efi"
PARTS

bootdir=$(mktemp -d)
espdir=$(mktemp -d)
trap 'rm -rf "$bootdir" "$espdir"' EXIT

# GRUB for x86_64 UEFI with only the modules its configuration uses; the
# configuration is locked by a random superuser password of which only the
# PBKDF2 hash is kept (in GRUB's format).
grub-mkimage -O x86_64-efi -p /EFI/BOOT -o "$espdir/BOOTX64.EFI" \
  part_gpt fat ext2 normal linux configfile regexp probe echo test password_pbkdf2 \
  serial terminal efi_gop all_video
hash=$("$board/grub-password-hash.sh")
sed "s/@SMS_GRUB_PASSWORD_PBKDF2@/$hash/" "$board/grub-efi-image.cfg" >"$espdir/grub.cfg"
if grep -q '@SMS_GRUB_PASSWORD_PBKDF2@' "$espdir/grub.cfg"; then
  echo "post-image: the GRUB password hash was not filled in" >&2
  exit 1
fi
mkfs.vfat -F 16 -n SMS-EFI --offset $((esp_start * 2048)) "$img" $((esp_size * 1024)) >/dev/null 2>&1
mmd -i "$img@@$((esp_start * MiB))" ::/EFI ::/EFI/BOOT
mcopy -i "$img@@$((esp_start * MiB))" "$espdir/BOOTX64.EFI" "$espdir/grub.cfg" ::/EFI/BOOT/

printf 'ORDER="A B"\nA_TRY=3\nB_TRY=0\n' >"$bootdir/slot.env"
cp "$out/vmlinuz" "$out/initrd.img" "$bootdir/"
mke2fs -q -F -t ext4 -L sms-boot -d "$bootdir" -E offset=$((boot_start * MiB)) "$img" "${boot_size}M"
mke2fs -q -F -t ext4 -O ^has_journal -L sms-root-a -d "$out/rootfs" -E offset=$((a_start * MiB)) "$img" "${slot_size}M"
mke2fs -q -F -t ext4 -O ^has_journal -L sms-root-b -E offset=$((b_start * MiB)) "$img" "${slot_size}M"
