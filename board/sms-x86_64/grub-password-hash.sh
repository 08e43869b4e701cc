#!/usr/bin/env bash
# Prints the hash of a random GRUB superuser password in GRUB's
# PBKDF2-SHA512 format (grub.pbkdf2.sha512.ROUNDS.SALT.HASH). The password
# itself is never printed or kept: nobody can edit a boot entry or open a
# GRUB shell, which is what both images' configurations want.
set -euo pipefail
python3 - <<'PY'
import hashlib, secrets
salt = secrets.token_bytes(64)
key = hashlib.pbkdf2_hmac("sha512", secrets.token_urlsafe(32).encode(), salt, 10000, 64)
print(f"grub.pbkdf2.sha512.10000.{salt.hex().upper()}.{key.hex().upper()}")
PY
