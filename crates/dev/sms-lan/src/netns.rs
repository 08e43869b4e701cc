//! The kernel as a host on the segment, in a network namespace of its own:
//! how tests put real peers (curl, net-snmp, an HTTPS server, the
//! appliance's daemons) on the segment without touching the machine's
//! networks. Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN).

use crate::{Lan, LanError};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A network namespace whose only link is a tap port of a [`Lan`];
/// removed (with its tap) when dropped.
pub struct KernelHost {
    /// Name of the namespace (for `ip netns exec`).
    pub ns: String,
    /// Name of the tap device inside it.
    pub tap: String,
}

/// Runs `ip` with `args`; its standard output, or an error with its
/// standard error.
pub fn ip(args: &[&str]) -> Result<String, LanError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| LanError::Io("running ip".into(), e))?;
    if !out.status.success() {
        return Err(LanError::Config(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl KernelHost {
    /// Attaches a new tap to `lan`, moves it into a new namespace and gives
    /// it `cidr` (e.g. `192.0.2.1/24`).
    pub fn join(lan: &Lan, cidr: &str) -> Result<KernelHost, LanError> {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let k = KernelHost {
            ns: format!("smslan-{pid}-{n}"),
            tap: format!("sl{}t{n}", pid % 100_000),
        };
        ip(&["netns", "add", &k.ns])?;
        lan.attach_tap(&k.tap)?;
        ip(&["link", "set", &k.tap, "netns", &k.ns])?;
        ip(&["-n", &k.ns, "addr", "add", cidr, "dev", &k.tap])?;
        ip(&["-n", &k.ns, "link", "set", &k.tap, "up"])?;
        ip(&["-n", &k.ns, "link", "set", "lo", "up"])?;
        Ok(k)
    }

    /// Runs `f` on a thread inside the namespace: the sockets it opens are
    /// the kernel's on the segment.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, LanError> {
        let path = format!("/run/netns/{}", self.ns);
        tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path)
                .map_err(|e| LanError::Io(format!("opening {path}"), e))?;
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| LanError::Io(format!("entering {path}"), std::io::Error::from(e)))?;
            Ok(f())
        })
        .await
        .map_err(|e| LanError::Config(format!("thread in the namespace: {e}")))?
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, program]);
        c
    }

    /// The kernel's neighbour entry for `addr` (`ip neigh show`).
    pub fn neighbour(&self, addr: &str) -> Result<String, LanError> {
        ip(&["-n", &self.ns, "neigh", "show", addr])
    }

    /// Forgets every neighbour entry (the kernel keeps failed ones for a
    /// while; its table is shared by all namespaces).
    pub fn flush_neighbours(&self) -> Result<(), LanError> {
        ip(&["-n", &self.ns, "neigh", "flush", "all"]).map(|_| ())
    }
}

impl Drop for KernelHost {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}
