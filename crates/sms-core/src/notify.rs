//! systemd readiness and watchdog notifications (`sd_notify` protocol).
//!
//! Units are `Type=notify` with `WatchdogSec`; the daemons say when they
//! are ready and keep the watchdog fed. Outside systemd (`NOTIFY_SOCKET`
//! unset) every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

fn send(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return false;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    sent.is_ok()
}

/// Tells systemd the daemon is ready, and starts feeding the watchdog at
/// half its interval when one is configured (needs a tokio runtime).
pub fn ready() {
    send("READY=1");
    if let Some(usec) = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let every = Duration::from_micros(usec / 2).max(Duration::from_millis(100));
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                loop {
                    send("WATCHDOG=1");
                    tokio::time::sleep(every).await;
                }
            });
        }
    }
}

/// Tells systemd the daemon is stopping.
pub fn stopping() {
    send("STOPPING=1");
}
