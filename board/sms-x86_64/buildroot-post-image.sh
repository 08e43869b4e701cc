#!/usr/bin/env bash
# Buildroot post-image: the EFI partition (GRUB, its configuration with the
# A/B counter, the kernel) and the GPT disk from genimage.cfg.
set -euo pipefail
board=$(dirname "$0")
images=$BINARIES_DIR
mkdir -p "$images/efi-part/EFI/BOOT"
cp "$images/efi-part/EFI/BOOT/bootx64.efi" "$images/efi-part/EFI/BOOT/" 2>/dev/null || true
# GRUB's superuser password: random, never stored; only its PBKDF2-SHA512
# hash (GRUB's format) goes into the configuration.
hash=$("$board/grub-password-hash.sh")
sed "s/@SMS_GRUB_PASSWORD_PBKDF2@/$hash/" "$board/grub.cfg" >"$images/efi-part/EFI/BOOT/grub.cfg"
if grep -q '@SMS_GRUB_PASSWORD_PBKDF2@' "$images/efi-part/EFI/BOOT/grub.cfg"; then
  echo "buildroot-post-image: the GRUB password hash was not filled in" >&2
  exit 1
fi
support/scripts/genimage.sh -c "$board/genimage.cfg"
