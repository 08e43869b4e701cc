#!/usr/bin/env bash
# Installs the Debian packages the build, the tests and `make run` need,
# when they are missing. Idempotent: does nothing when all are present.
set -euo pipefail

# package:command-that-proves-it-is-installed ("-": check the package itself)
needed=(
  "dbus-daemon:dbus-daemon"   # real private bus for D-Bus tests and make run
  "dbus-bin:dbus-send"        # to call the daemons by hand in make run
  "curl:curl"                 # peer in tests and benchmarks
  "mount:mount"               # tmpfs for the disk-full test
  "python3:python3"           # config generation in make run
  "chrony:chronyd"            # NTP client in tests (chronyd -Q), peer in benchmarks
  "mmdebstrap:mmdebstrap"     # the image's root file system from Debian packages
  "qemu-system-x86:qemu-system-x86_64"  # boots the image
  "busybox-static:-"          # the initramfs (static: no command check, the package itself)
  "cpio:cpio"
  "zstd:zstd"                 # compressed image
  "e2fsprogs:mke2fs"          # slot and boot file systems
  "fdisk:sfdisk"              # GPT layout
  "ovmf:-"                    # UEFI firmware: QEMU boots the image as hardware does
  "grub-efi-amd64-bin:-"      # GRUB for the image's EFI partition (grub-mkimage)
  "grub-common:grub-mkimage"
  "dosfstools:mkfs.vfat"      # the EFI partition's FAT file system
  "mtools:mcopy"              # ...filled without mounting it
  "bmap-tools:bmaptool"       # the image's block map; flashing (and the boot test's replacement disk)
  "openssh-client:ssh"        # boot test logs in over SSH
  "gawk:awk"
  "nginx-light:nginx"         # peer of the pull server in benchmarks
  "wrk:wrk"                   # HTTP load generator in benchmarks
  "snmp:snmpget"              # net-snmp tools: clients of the agent and trap senders in tests
  "snmptrapd:snmptrapd"       # manager receiving the appliance's traps in tests, peer in benchmarks
  "snmpd:snmpd"               # peer of the agent in benchmarks
  "tzdata:-"                  # time zones for the settings applier's tests
  "python3-magic:-"           # Buildroot check-package in buildroot/validate.sh
  "python3-flake8:-"          # ...which also lints Python files
  "shellcheck:shellcheck"     # ...and shell scripts
  "xz-utils:xz"               # unpacks the Buildroot release tarball
  "make:make"
  "systemd:systemd-analyze"   # rates the units' exposure (image/unit-security.sh)
  "iproute2:ss"               # receive buffers in the trap benchmark
  "rsyslog:rsyslogd"          # the syslog server receiving the appliance's log in tests
  "rsyslog-openssl:-"         # ...over TLS (RFC 5425)
  "openssl:openssl"           # the boot test's syslog server certificate
  "python3-aiosmtpd:-"        # the SMTP submission server receiving notification mails in tests
  "openssh-server:-"          # the SFTP server receiving backups in tests (started by the test on loopback)
)

missing=()
for item in "${needed[@]}"; do
  pkg=${item%%:*}
  cmd=${item#*:}
  if [ "$cmd" = - ]; then
    # Installed, not merely known (a removed package keeps its status).
    [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] ||
      missing+=("$pkg")
  elif ! command -v "$cmd" >/dev/null 2>&1 && ! dpkg -s "$pkg" >/dev/null 2>&1; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  echo "installing missing packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: need root to install ${missing[*]} (or install them yourself)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Servers among them (sshd, snmpd, nginx, rsyslog) are started by the
  # tests that need them, on loopback: the packages must not start them.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
