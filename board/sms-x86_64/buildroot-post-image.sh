#!/usr/bin/env bash
# Buildroot post-image: the EFI partition (GRUB, its configuration with the
# A/B counter, the kernel) and the GPT disk from genimage.cfg.
set -euo pipefail
board=$(dirname "$0")
images=$BINARIES_DIR
mkdir -p "$images/efi-part/EFI/BOOT"
cp "$images/efi-part/EFI/BOOT/bootx64.efi" "$images/efi-part/EFI/BOOT/" 2>/dev/null || true
cp "$board/grub.cfg" "$images/efi-part/EFI/BOOT/grub.cfg"
support/scripts/genimage.sh -c "$board/genimage.cfg"
