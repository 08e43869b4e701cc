//! Tap devices: the kernel's own network stack as a host on the segment.

use crate::LanError;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Opens (creating it) tap device `name`, non-blocking, frames without the
/// packet-information header.
pub(crate) fn open(name: &str) -> Result<File, LanError> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(LanError::Config(format!(
            "tap name {name:?} must have 1 to {} bytes",
            libc::IFNAMSIZ - 1
        )));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")
        .map_err(|e| LanError::Io("opening /dev/net/tun".into(), e))?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which IfReq lays
    // out (name, flags, padding to 40 bytes); the fd is open.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req) };
    if r < 0 {
        return Err(LanError::Io(
            format!("creating tap {name} (needs CAP_NET_ADMIN)"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(file)
}
