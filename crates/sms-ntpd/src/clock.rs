//! What the relay does with the offset it measured.
//!
//! On the appliance ([`SystemClock`]) the system clock is disciplined: a
//! large offset is stepped (`clock_settime`), a small one handed to the
//! kernel's PLL (`adjtimex`), which slews; this needs CAP_SYS_TIME and
//! nothing else. On a development host ([`OffsetClock`]) the system clock
//! is never touched: the relay serves "system clock + estimated offset", so
//! every test runs without privileges over the clock.

use std::sync::Mutex;

/// A way of applying time.
pub trait Clock: Send + Sync {
    /// Seconds to add to the system clock when serving time.
    fn serve_offset(&self) -> f64;
    /// Applies a fresh offset measurement (upstream minus system clock).
    /// Returns true when the clock was stepped, which invalidates samples.
    fn apply(&self, offset: f64) -> Result<bool, String>;
    /// Name for status and logs.
    fn name(&self) -> &'static str;
}

/// Serves system clock + estimate; never touches the system clock.
#[derive(Debug, Default)]
pub struct OffsetClock {
    estimate: Mutex<f64>,
}

impl Clock for OffsetClock {
    fn serve_offset(&self) -> f64 {
        *self.estimate.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, offset: f64) -> Result<bool, String> {
        *self.estimate.lock().unwrap_or_else(|p| p.into_inner()) = offset;
        Ok(false)
    }

    fn name(&self) -> &'static str {
        "offset"
    }
}

/// Disciplines the system clock.
#[derive(Debug)]
pub struct SystemClock {
    step_threshold: f64,
}

impl SystemClock {
    /// Steps beyond `step_threshold` seconds, slews below.
    pub fn new(step_threshold: f64) -> SystemClock {
        SystemClock { step_threshold }
    }
}

impl Clock for SystemClock {
    fn serve_offset(&self) -> f64 {
        0.0
    }

    fn apply(&self, offset: f64) -> Result<bool, String> {
        if offset.abs() > self.step_threshold {
            step(offset)?;
            tracing::warn!("system clock stepped by {offset:+.6} s");
            Ok(true)
        } else {
            slew(offset)?;
            Ok(false)
        }
    }

    fn name(&self) -> &'static str {
        "system"
    }
}

fn step(offset: f64) -> Result<(), String> {
    use nix::time::{clock_gettime, clock_settime, ClockId};
    let now =
        clock_gettime(ClockId::CLOCK_REALTIME).map_err(|e| format!("reading the clock: {e}"))?;
    let total = now.tv_sec() as f64 + now.tv_nsec() as f64 * 1e-9 + offset;
    let secs = total.floor();
    let ts = nix::sys::time::TimeSpec::new(secs as i64, ((total - secs) * 1e9) as i64);
    clock_settime(ClockId::CLOCK_REALTIME, ts)
        .map_err(|e| format!("stepping the clock (needs CAP_SYS_TIME): {e}"))
}

#[allow(unsafe_code)]
fn slew(offset: f64) -> Result<(), String> {
    // Hand the offset to the kernel PLL in nanoseconds (ADJ_NANO), with the
    // PLL enabled and the clock marked synchronised.
    // SAFETY: adjtimex only reads and writes the struct we pass; a zeroed
    // `timex` is a valid value for every field.
    let mut tx: nix::libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = nix::libc::ADJ_OFFSET
        | nix::libc::ADJ_STATUS
        | nix::libc::ADJ_NANO
        | nix::libc::ADJ_MAXERROR
        | nix::libc::ADJ_ESTERROR;
    tx.offset = (offset * 1e9).clamp(-0.5e9, 0.5e9) as nix::libc::c_long;
    tx.status = nix::libc::STA_PLL | nix::libc::STA_NANO;
    tx.maxerror = 0;
    tx.esterror = 0;
    // SAFETY: `tx` is a valid, exclusively borrowed timex.
    let rc = unsafe { nix::libc::adjtimex(&mut tx) };
    if rc < 0 {
        return Err(format!(
            "adjtimex (needs CAP_SYS_TIME): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}
