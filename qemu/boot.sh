#!/usr/bin/env bash
# Boots the SMS OS image under QEMU (TCG; SMS_ACCEL=kvm where KVM is known to
# work) the way hardware boots it: UEFI firmware (Debian's OVMF) finds GRUB
# on the disk's EFI partition by the removable-media path, GRUB loads the
# kernel and initramfs from the boot partition of the same disk and names
# that partition by its UUID; the initramfs does the A/B slot choice. The
# disk is virtio; the network is QEMU user networking with the appliance's
# ports forwarded to the host, so nothing needs root, a tap or a bridge.
# Inside the guest the host is 10.0.2.2.
#
# Environment (defaults in brackets):
#   SMS_DISK [out/disk.img]
#   SMS_BOOT [uefi]: uefi, or kernel to hand QEMU the kernel and initramfs
#     directly (development; SMS_KERNEL [out/vmlinuz], SMS_INITRD
#     [out/initrd.img], SMS_APPEND adds to the kernel command line, which
#     GRUB keeps locked in uefi mode)
#   SMS_FIRMWARE_VARS [DISK.efivars]: the UEFI variable store of this
#     machine, made from OVMF's template on first use (the board's NVRAM)
#   SMS_SERIAL [stdio]: stdio for an interactive console, or a file for logs
#   SMS_SERIAL_SOCKET: with a SMS_SERIAL file, also serve the console on this
#     unix socket (tests type on it: qemu/console.py)
#   SMS_PORT_BASE [10000]: host ports are BASE+22 (SSH), BASE+80, BASE+443,
#     BASE+161/udp (SNMP), BASE+8162/udp (traps), BASE+123/udp (NTP), BASE+1098, BASE+1099, BASE+3306, BASE+4444
#   SMS_EXTRA_DISK: a second disk seen before the appliance's (a USB stick
#     left in; the boot test's has partitions named like the appliance's)
#   SMS_EXTRA_FWD: more forwarding rules, comma-separated (hostfwd=tcp:127.0.0.1:HOST-:GUEST)
#   SMS_MONITOR: path of a QEMU monitor socket (for tests)
#   SMS_DISK_BUS [virtio]: virtio, or ahci (the disk on the SATA controller
#     of a server board: /dev/sda in the guest)
#   SMS_NIC [virtio]: virtio, or e1000e (an Intel NIC of server hardware)
#   SMS_NET [user]: user (QEMU user networking with the forwards above), or
#     lan: the virtual Ethernet segment of `sms-sim lan` at SMS_LAN_SOCKET
#     (the appliance gets 192.0.2.2 by DHCP; sms-sim lan forwards the same
#     host ports); SMS_MAC sets the NIC's address (two appliances on one
#     segment need two)
#   SMS_MEMORY [1024] (MiB)
#   SMS_CPUS [2]: virtual CPUs. Under TCG on a loaded host the UEFI firmware
#     can lose an AP's start-up IPI after a reset and spin forever in its
#     AP wake-up loop (edk2 WaitApWakeup has no timeout; tianocore/edk2
#     PR 13164), so the reboot-heavy boot test runs with 1
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
disk=${SMS_DISK:-$top/out/disk.img}
serial=${SMS_SERIAL:-stdio}
base=${SMS_PORT_BASE:-10000}
mode=${SMS_BOOT:-uefi}

[ -e "$disk" ] || { echo "qemu/boot.sh: $disk is missing: build the image first (image/build.sh)" >&2; exit 1; }

# TCG unless SMS_ACCEL=kvm: a probe cannot tell a /dev/kvm that works from
# one that starts a paused VM and then fails at the guest's first
# instructions ("KVM internal error ... emulation failure", seen on these
# machines), and a boot test must not depend on which one a host has.
args=(-accel "${SMS_ACCEL:-tcg}" -machine q35 -cpu max -smp "${SMS_CPUS:-2}" -m "${SMS_MEMORY:-1024}")

case "$mode" in
  uefi)
    [ -z "${SMS_APPEND:-}" ] || { echo "qemu/boot.sh: SMS_APPEND needs SMS_BOOT=kernel: in uefi mode the command line is GRUB's, and locked" >&2; exit 1; }
    code=/usr/share/OVMF/OVMF_CODE_4M.fd
    template=/usr/share/OVMF/OVMF_VARS_4M.fd
    if [ ! -r "$code" ] || [ ! -r "$template" ]; then
      echo "qemu/boot.sh: no UEFI firmware ($code): apt-get install ovmf (make test and make run do)" >&2
      exit 1
    fi
    vars=${SMS_FIRMWARE_VARS:-$disk.efivars}
    [ -s "$vars" ] || cp "$template" "$vars"
    args+=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=$code"
      -drive "if=pflash,format=raw,unit=1,file=$vars")
    ;;
  kernel)
    kernel=${SMS_KERNEL:-$top/out/vmlinuz}
    initrd=${SMS_INITRD:-$top/out/initrd.img}
    for f in "$kernel" "$initrd"; do
      [ -e "$f" ] || { echo "qemu/boot.sh: $f is missing: build the image first (image/build.sh)" >&2; exit 1; }
    done
    # The boot partition's identity, as the boot loader passes it.
    boot_uuid=$(sfdisk --part-uuid "$disk" 1 | tr 'A-F' 'a-f')
    [ -n "$boot_uuid" ] || { echo "qemu/boot.sh: $disk has no partition 1 with a UUID" >&2; exit 1; }
    args+=(-kernel "$kernel" -initrd "$initrd"
      -append "console=ttyS0,115200 ro panic=5 quiet loglevel=3 systemd.show_status=auto sms.boot=$boot_uuid ${SMS_APPEND:-}")
    ;;
  *) echo "qemu/boot.sh: SMS_BOOT is uefi or kernel, not $mode" >&2; exit 1 ;;
esac

fwd="hostfwd=tcp:127.0.0.1:$((base + 22))-:22"
fwd+=",hostfwd=tcp:127.0.0.1:$((base + 80))-:80,hostfwd=tcp:127.0.0.1:$((base + 443))-:443"
fwd+=",hostfwd=udp:127.0.0.1:$((base + 161))-:161,hostfwd=udp:127.0.0.1:$((base + 123))-:123"
fwd+=",hostfwd=udp:127.0.0.1:$((base + 8162))-:8162"
for p in 1098 1099 3306 4444; do fwd+=",hostfwd=tcp:127.0.0.1:$((base + p))-:$p"; done
[ -n "${SMS_EXTRA_FWD:-}" ] && fwd+=",${SMS_EXTRA_FWD}"

# Disks in PCI order: a stick left in comes first (vda), the appliance's
# own disk after it but first in the firmware's boot order.
if [ -n "${SMS_EXTRA_DISK:-}" ]; then
  args+=(-drive "file=$SMS_EXTRA_DISK,if=none,id=stick,format=raw,snapshot=on" -device "virtio-blk-pci,drive=stick")
fi
# (In kernel mode QEMU's own loader is first: no boot index.)
boot_index=""
[ "$mode" = uefi ] && boot_index=",bootindex=0"
case "${SMS_DISK_BUS:-virtio}" in
  virtio) disk_dev="virtio-blk-pci,drive=system$boot_index" ;;
  # q35's own AHCI controller, as on a server board.
  ahci) disk_dev="ide-hd,drive=system,bus=ide.0$boot_index" ;;
  *) echo "qemu/boot.sh: SMS_DISK_BUS is virtio or ahci, not $SMS_DISK_BUS" >&2; exit 1 ;;
esac
case "${SMS_NIC:-virtio}" in
  virtio) nic_dev="virtio-net-pci,netdev=lan,romfile=" ;;
  e1000e) nic_dev="e1000e,netdev=lan,romfile=" ;;
  *) echo "qemu/boot.sh: SMS_NIC is virtio or e1000e, not $SMS_NIC" >&2; exit 1 ;;
esac
[ -n "${SMS_MAC:-}" ] && nic_dev+=",mac=$SMS_MAC"
case "${SMS_NET:-user}" in
  user) netdev="user,id=lan,net=10.0.2.0/24,$fwd" ;;
  lan)
    seg=${SMS_LAN_SOCKET:?SMS_NET=lan needs SMS_LAN_SOCKET (the socket of sms-sim lan)}
    [ -S "$seg" ] || { echo "qemu/boot.sh: no segment at $seg: start sms-sim lan first" >&2; exit 1; }
    local_sock="$seg.vm.$$"
    rm -f "$local_sock"
    netdev="dgram,id=lan,local.type=unix,local.path=$local_sock,remote.type=unix,remote.path=$seg"
    ;;
  *) echo "qemu/boot.sh: SMS_NET is user or lan, not $SMS_NET" >&2; exit 1 ;;
esac
args+=(
  -drive "file=$disk,if=none,id=system,format=raw,cache=unsafe" -device "$disk_dev"
  -netdev "$netdev" -device "$nic_dev"
  -object "rng-random,filename=/dev/urandom,id=rng" -device "virtio-rng-pci,rng=rng"
  -display none
)
if [ "$serial" = stdio ]; then
  args+=(-serial mon:stdio)
elif [ -n "${SMS_SERIAL_SOCKET:-}" ]; then
  args+=(-chardev "socket,id=console,path=$SMS_SERIAL_SOCKET,server=on,wait=off,logfile=$serial,logappend=on"
    -serial chardev:console)
else
  args+=(-serial "file:$serial")
fi
[ -n "${SMS_MONITOR:-}" ] && args+=(-monitor "unix:$SMS_MONITOR,server,nowait")
exec qemu-system-x86_64 "${args[@]}"
