#!/usr/bin/env bash
# Lays out the disk (offline image: image/build.sh; Buildroot uses genimage.cfg
# with the same layout). Argument: the output directory holding rootfs/,
# vmlinuz and initrd.img.
#   p1 sms-boot    64 MiB  ext4: slot.env (A/B boot counter), kernel, initramfs
#   p2 sms-root-a  1 GiB   ext4, mounted read-only
#   p3 sms-root-b  1 GiB   ext4, mounted read-only (empty until an update)
#   p4 sms-data    512 MiB blank: formatted on first boot, grows with the disk
# Partitions are 1 MiB aligned; the slots have room to grow across updates.
set -euo pipefail
out=$1
img=$out/disk.img
MiB=$((1024 * 1024))
boot_start=1 boot_size=64
a_start=$((boot_start + boot_size)) slot_size=1024
b_start=$((a_start + slot_size))
data_start=$((b_start + slot_size)) data_size=512
total=$((data_start + data_size + 1))

rm -f "$img"
truncate -s $((total * MiB)) "$img"
sfdisk --quiet "$img" <<PARTS
label: gpt
start=${boot_start}MiB, size=${boot_size}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="sms-boot"
start=${a_start}MiB, size=${slot_size}MiB, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="sms-root-a"
start=${b_start}MiB, size=${slot_size}MiB, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="sms-root-b"
start=${data_start}MiB, size=${data_size}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="sms-data"
PARTS

bootdir=$(mktemp -d)
trap 'rm -rf "$bootdir"' EXIT
printf 'ORDER="A B"\nA_TRY=3\nB_TRY=0\n' >"$bootdir/slot.env"
cp "$out/vmlinuz" "$out/initrd.img" "$bootdir/"
mke2fs -q -F -t ext4 -L sms-boot -d "$bootdir" -E offset=$((boot_start * MiB)) "$img" "${boot_size}M"
mke2fs -q -F -t ext4 -O ^has_journal -L sms-root-a -d "$out/rootfs" -E offset=$((a_start * MiB)) "$img" "${slot_size}M"
mke2fs -q -F -t ext4 -O ^has_journal -L sms-root-b -E offset=$((b_start * MiB)) "$img" "${slot_size}M"
