#!/usr/bin/env bash
# Validates this BR2_EXTERNAL tree against a Buildroot source tree:
#   - sms_x86_64_defconfig loads (make BR2_EXTERNAL=... sms_x86_64_defconfig),
#   - every line of the defconfig survives into .config (kconfig silently
#     drops lines whose dependencies are unmet),
#   - make show-info lists the sms packages,
#   - utils/check-package is clean on the external tree.
# Nothing is built or downloaded. Without BUILDROOT_DIR it unpacks the
# Buildroot release tarball found in ../shared/buildroot/ beside the
# checkout (checked against its SHA-256) into out/buildroot-src, once; with
# neither it fails unless SMS_BUILDROOT_OPTIONAL=1 (then it says it skipped).
set -euo pipefail
ext=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$ext/.." && pwd)
if [ -z "${BUILDROOT_DIR:-}" ]; then
  tarball=""
  for t in "$repo"/../shared/buildroot/buildroot-*.tar.xz; do
    [ -f "$t" ] && tarball=$t
  done
  if [ -z "$tarball" ]; then
    if [ "${SMS_BUILDROOT_OPTIONAL:-0}" = 1 ]; then
      echo "buildroot validation: SKIPPED (no Buildroot tree; set BUILDROOT_DIR=/path/to/buildroot)"
      exit 0
    fi
    echo "buildroot validation: FAILED (no Buildroot tree: set BUILDROOT_DIR, or put a release tarball in ../shared/buildroot/)" >&2
    exit 1
  fi
  name=$(basename "$tarball" .tar.xz)
  dest="$repo/out/buildroot-src/$name"
  if [ ! -f "$dest/.unpacked" ]; then
    readme="$(dirname "$tarball")/README.md"
    want=$(grep -o 'SHA-256: [0-9a-f]\{64\}' "$readme" 2>/dev/null | awk '{print $2}' || true)
    if [ -n "$want" ]; then
      got=$(sha256sum "$tarball" | awk '{print $1}')
      if [ "$got" != "$want" ]; then
        echo "buildroot validation: FAILED ($tarball has SHA-256 $got, its README says $want)" >&2
        exit 1
      fi
    fi
    echo "== unpacking $(basename "$tarball")"
    rm -rf "$dest"
    mkdir -p "$dest"
    tar -xJf "$tarball" -C "$dest" --strip-components=1
    touch "$dest/.unpacked"
  fi
  BUILDROOT_DIR=$dest
fi
br=$(cd "$BUILDROOT_DIR" && pwd)
out=$(mktemp -d /tmp/sms-br-validate.XXXXXX)
trap 'rm -rf "$out"' EXIT
fail=0

echo "== defconfig"
make -s -C "$br" O="$out" BR2_EXTERNAL="$ext" sms_x86_64_defconfig >/dev/null

echo "== every defconfig line in .config"
while IFS= read -r line; do
  case "$line" in "" | "# BR2_"*" is not set") ;; "#"*) continue ;; esac
  [ -z "$line" ] && continue
  if ! grep -qxF "$line" "$out/.config"; then
    echo "   DROPPED: $line (unmet dependency?)"
    fail=1
  fi
done <"$ext/configs/sms_x86_64_defconfig"
[ "$fail" -eq 0 ] && echo "   all $(grep -c '^BR2_\|^# BR2_' "$ext/configs/sms_x86_64_defconfig") lines present"

echo "== root login"
# Without this, Buildroot gives root an empty password on the serial getty.
if grep -qx '# BR2_TARGET_ENABLE_ROOT_LOGIN is not set' "$out/.config"; then
  echo "   root login disabled (root has no password that works)"
else
  echo "   ROOT LOGIN ENABLED: set '# BR2_TARGET_ENABLE_ROOT_LOGIN is not set' in the defconfig"
  fail=1
fi

echo "== boot loader locked"
grubcfg="$repo/board/sms-x86_64/grub.cfg"
if grep -q '^set superusers=' "$grubcfg" && grep -q '^password_pbkdf2 ' "$grubcfg" &&
  ! grep '^menuentry ' "$grubcfg" | grep -qv -- '--unrestricted'; then
  echo "   GRUB: a superuser with a password; entries boot without it, edits need it"
else
  echo "   GRUB NOT LOCKED: $grubcfg needs set superusers, password_pbkdf2 and --unrestricted entries"
  fail=1
fi
# The root slot by partition UUID on GRUB's own disk, never by a label.
if grep -q 'root=PARTUUID=\$root_uuid' "$grubcfg" && grep -q -- '--part-uuid' "$grubcfg" &&
  ! grep -qE 'LABEL=' "$grubcfg"; then
  echo "   GRUB: the root slot by partition UUID on its own disk, no label"
else
  echo "   GRUB FINDS THE ROOT BY LABEL: $grubcfg must use root=PARTUUID= from probe --part-uuid"
  fail=1
fi
# The hash both post-image scripts put in GRUB's configuration (from
# grub-password-hash.sh) must be in GRUB's format.
hash=$("$repo/board/sms-x86_64/grub-password-hash.sh")
if [[ "$hash" =~ ^grub\.pbkdf2\.sha512\.10000\.[0-9A-F]{128}\.[0-9A-F]{128}$ ]] &&
  grep -q '^hash=\$("\$board/grub-password-hash.sh")$' "$repo/board/sms-x86_64/buildroot-post-image.sh"; then
  echo "   the image's GRUB password hash has GRUB's PBKDF2 format"
else
  echo "   BAD GRUB HASH from grub-password-hash.sh (or buildroot-post-image.sh does not use it): $hash"
  fail=1
fi

echo "== passwords on the data partition"
# The post-fakeroot script (after Buildroot's users tables) keeps the shadow
# file as the factory file and links /etc/shadow to the data partition.
if grep -qx "BR2_ROOTFS_POST_FAKEROOT_SCRIPT=\"\$(BR2_EXTERNAL_SMS_PATH)/../board/sms-x86_64/post-fakeroot.sh\"" "$out/.config"; then
  fake=$out/fake-root
  mkdir -p "$fake/etc"
  printf 'root:*:1::::::\nadmin:$6$f$x:1:0:99999:7:::\n' >"$fake/etc/shadow"
  "$repo/board/sms-x86_64/post-fakeroot.sh" "$fake"
  if [ "$(readlink "$fake/etc/shadow")" = /var/lib/sms/accounts/shadow ] &&
    grep -q '^admin:' "$fake/usr/share/sms/factory/shadow" &&
    [ "$(stat -c %a "$fake/usr/share/sms/factory/shadow")" = 600 ]; then
    echo "   /etc/shadow links to /var/lib/sms/accounts/shadow; the factory file is kept (0600)"
  else
    echo "   PASSWORDS NOT ON THE DATA PARTITION: post-fakeroot.sh did not link /etc/shadow"
    fail=1
  fi
else
  echo "   BR2_ROOTFS_POST_FAKEROOT_SCRIPT does not name board/sms-x86_64/post-fakeroot.sh"
  fail=1
fi

echo "== show-info"
make -s -C "$out" show-info >"$out/info.json"
python3 - "$out/info.json" "$repo" <<'PY' || fail=1
import json, sys
info = json.load(open(sys.argv[1]))
import re, subprocess
want = ["sms-apply", "sms-backup", "sms-cli", "sms-distd", "sms-had", "sms-logd", "sms-ntpd", "sms-snmpd", "sms-updated"]
head = subprocess.run(["git", "-C", sys.argv[2], "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
for p in want:
    if p not in info:
        print(f"   MISSING package {p}")
        sys.exit(1)
    i = info[p]
    if not re.fullmatch(r"[0-9a-f]{40}", i.get("version", "")) or i.get("version") != head:
        print(f"   {p}: version {i.get('version')!r} is not pinned to this checkout's commit {head}")
        sys.exit(1)
    print(f"   {p}: version {i.get('version')}, infra {i.get('infra', {}) if isinstance(i.get('infra'), str) else 'cargo'}, deps {', '.join(i.get('dependencies', []))}")
print(f"   {len(info)} packages in the configuration")
PY

echo "== check-package"
# check-package needs python's magic module (Debian: python3-magic).
py=""
for p in python3 /usr/bin/python3; do
  if command -v "$p" >/dev/null && "$p" -c 'import magic' 2>/dev/null; then py=$p; break; fi
done
if [ -z "$py" ]; then
  echo "   cannot run check-package: no python3 with the magic module (apt-get install python3-magic)"
  fail=1
else
  # .checkpackageignore: the defconfig cannot force hash checks, since the
  # sms packages come from this repository at a version chosen at build
  # time (their integrity is the git commit); Buildroot's own tree lists
  # its defconfigs with custom versions the same way.
  (cd "$ext" && "$py" "$br/utils/check-package" --br2-external --ignore-list .checkpackageignore \
    external.desc Config.in external.mk configs/sms_x86_64_defconfig package/*/*) || fail=1
fi

[ "$fail" -eq 0 ] && echo "buildroot validation: PASSED" || echo "buildroot validation: FAILED"
exit "$fail"
