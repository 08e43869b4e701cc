#!/usr/bin/env bash
# Boots the SMS OS image under QEMU (TCG; SMS_ACCEL=kvm where KVM is known to work).
# The kernel and initramfs are given directly (the initramfs does the A/B
# slot choice; the command line names the boot partition by its partition
# UUID, read from the disk, as a boot loader does); the disk is virtio; the network is QEMU user networking with
# the appliance's ports forwarded to the host, so nothing needs root, a tap
# or a bridge. Inside the guest the host is 10.0.2.2.
#
# Environment (defaults in brackets):
#   SMS_DISK [out/disk.img]  SMS_KERNEL [out/vmlinuz]  SMS_INITRD [out/initrd.img]
#   SMS_SERIAL [stdio]: stdio for an interactive console, or a file for logs
#   SMS_SERIAL_SOCKET: with a SMS_SERIAL file, also serve the console on this
#     unix socket (tests type on it: qemu/console.py)
#   SMS_PORT_BASE [10000]: host ports are BASE+22 (SSH), BASE+80, BASE+443,
#     BASE+161/udp (SNMP), BASE+8162/udp (traps), BASE+123/udp (NTP), BASE+1098, BASE+1099, BASE+3306, BASE+4444
#   SMS_EXTRA_DISK: a second disk seen before the appliance's (a USB stick
#     left in; the boot test's has partitions named like the appliance's)
#   SMS_EXTRA_FWD: more forwarding rules, comma-separated (hostfwd=tcp:127.0.0.1:HOST-:GUEST)
#   SMS_MONITOR: path of a QEMU monitor socket (for tests)
#   SMS_MEMORY [1024] (MiB)
#   SMS_APPEND: more kernel command line (e.g. systemd.journald.forward_to_console=1)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
disk=${SMS_DISK:-$top/out/disk.img}
kernel=${SMS_KERNEL:-$top/out/vmlinuz}
initrd=${SMS_INITRD:-$top/out/initrd.img}
serial=${SMS_SERIAL:-stdio}
base=${SMS_PORT_BASE:-10000}

for f in "$disk" "$kernel" "$initrd"; do
  [ -e "$f" ] || { echo "qemu/boot.sh: $f is missing: build the image first (image/build.sh)" >&2; exit 1; }
done

# TCG unless SMS_ACCEL=kvm: a probe cannot tell a /dev/kvm that works from
# one that starts a paused VM and then fails at the guest's first
# instructions ("KVM internal error ... emulation failure", seen on these
# machines), and a boot test must not depend on which one a host has.
accel=(-accel "${SMS_ACCEL:-tcg}")

# The boot partition's identity, as the boot loader passes it.
boot_uuid=$(sfdisk --part-uuid "$disk" 1 | tr 'A-F' 'a-f')
[ -n "$boot_uuid" ] || { echo "qemu/boot.sh: $disk has no partition 1 with a UUID" >&2; exit 1; }

fwd="hostfwd=tcp:127.0.0.1:$((base + 22))-:22"
fwd+=",hostfwd=tcp:127.0.0.1:$((base + 80))-:80,hostfwd=tcp:127.0.0.1:$((base + 443))-:443"
fwd+=",hostfwd=udp:127.0.0.1:$((base + 161))-:161,hostfwd=udp:127.0.0.1:$((base + 123))-:123"
fwd+=",hostfwd=udp:127.0.0.1:$((base + 8162))-:8162"
for p in 1098 1099 3306 4444; do fwd+=",hostfwd=tcp:127.0.0.1:$((base + p))-:$p"; done
[ -n "${SMS_EXTRA_FWD:-}" ] && fwd+=",${SMS_EXTRA_FWD}"

args=(
  "${accel[@]}" -machine q35 -cpu max -smp 2 -m "${SMS_MEMORY:-1024}"
  -kernel "$kernel" -initrd "$initrd"
  -append "console=ttyS0,115200 ro panic=5 quiet loglevel=3 systemd.show_status=auto sms.boot=$boot_uuid ${SMS_APPEND:-}"
)
[ -n "${SMS_EXTRA_DISK:-}" ] && args+=(-drive "file=$SMS_EXTRA_DISK,if=virtio,format=raw,snapshot=on")
args+=(
  -drive "file=$disk,if=virtio,format=raw,cache=unsafe"
  -netdev "user,id=lan,net=10.0.2.0/24,$fwd" -device virtio-net-pci,netdev=lan
  -object rng-random,filename=/dev/urandom,id=rng -device virtio-rng-pci,rng=rng
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
