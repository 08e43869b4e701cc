//! What the relay does with the offset it measured.
//!
//! On the appliance ([`SystemClock`]) the system clock is disciplined: a
//! large offset is stepped (`clock_settime`), a small one handed to the
//! kernel's PLL (`adjtimex`), which slews; this needs CAP_SYS_TIME and
//! nothing else. On a development host ([`OffsetClock`]) the system clock
//! is never touched: the relay serves "system clock + estimated offset", so
//! every test runs without privileges over the clock.

use std::sync::Mutex;

/// Why the system clock could not be read or corrected.
#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    /// `clock_gettime` failed.
    #[error("reading the clock: {0}")]
    Read(nix::Error),
    /// `clock_settime` failed.
    #[error("stepping the clock (needs CAP_SYS_TIME): {0}")]
    Step(nix::Error),
    /// `adjtimex` failed.
    #[error("adjtimex (needs CAP_SYS_TIME): {0}")]
    Slew(std::io::Error),
}

/// A way of applying time.
pub trait Clock: Send + Sync {
    /// Seconds to add to the system clock when serving time.
    fn serve_offset(&self) -> f64;
    /// Applies a fresh offset measurement (upstream minus system clock).
    /// Returns true when the clock was stepped, which invalidates samples.
    fn apply(&self, offset: f64) -> Result<bool, ClockError>;
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
        *sms_core::daemon::lock(&self.estimate)
    }

    fn apply(&self, offset: f64) -> Result<bool, ClockError> {
        *sms_core::daemon::lock(&self.estimate) = offset;
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

    fn apply(&self, offset: f64) -> Result<bool, ClockError> {
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

fn step(offset: f64) -> Result<(), ClockError> {
    use nix::time::{clock_gettime, clock_settime, ClockId};
    let now = clock_gettime(ClockId::CLOCK_REALTIME).map_err(ClockError::Read)?;
    let total = now.tv_sec() as f64 + now.tv_nsec() as f64 * 1e-9 + offset;
    let secs = total.floor();
    let ts = nix::sys::time::TimeSpec::new(secs as i64, ((total - secs) * 1e9) as i64);
    clock_settime(ClockId::CLOCK_REALTIME, ts).map_err(ClockError::Step)
}

#[allow(unsafe_code)]
fn slew(offset: f64) -> Result<(), ClockError> {
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
        return Err(ClockError::Slew(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Why a correction the upstream sources agree on is not applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StepRefused {
    /// Already synchronised, and the sources now want the time moved
    /// further from where it was first synchronised than the threshold
    /// (plus the drift a real clock could have had since) allows.
    #[error("the upstream sources want the time moved {movement:+.3} s from where it was synchronised, beyond the panic threshold of {limit:.0} s; keeping the current time (restart sms-ntpd to accept a deliberate change)")]
    Panic {
        /// Seconds the time would have moved since the first
        /// synchronisation, this correction included.
        movement: f64,
        /// The threshold with the drift allowance, seconds.
        limit: f64,
    },
    /// The sources' time is before what a signed catalog proves has passed.
    #[error("the upstream time {proposed} is before {floor}, the issue time of the newest signed catalog; refusing to set the clock back")]
    BeforeFloor {
        /// The time the sources give (RFC 3339).
        proposed: String,
        /// The floor (RFC 3339).
        floor: String,
    },
}

/// The drift a real oscillator may have, as a fraction (500 ppm, the bound
/// NTP itself assumes): the panic threshold grows by this much of the time
/// elapsed since the first synchronisation.
pub const MAX_DRIFT: f64 = 500e-6;

/// Decides whether a correction may be applied. `movement` is how far the
/// served time would then be from where the first synchronisation put it
/// (measured against the monotonic clock, so that many small corrections
/// add up: a source set cannot walk the clock away in steps under the
/// threshold); `proposed_unix` the time the sources give; `synced_before`
/// whether the relay was synchronised before (the first synchronisation
/// may step any distance); `limit_s` the panic threshold with its drift
/// allowance, 0 for none; `floor` the newest signed catalog's issue time.
pub fn check_step(
    movement: f64,
    proposed_unix: f64,
    synced_before: bool,
    limit_s: f64,
    floor: Option<i64>,
) -> Result<(), StepRefused> {
    if let Some(floor) = floor {
        if proposed_unix < floor as f64 {
            return Err(StepRefused::BeforeFloor {
                proposed: sms_core::metadata::rfc3339(proposed_unix.floor() as i64),
                floor: sms_core::metadata::rfc3339(floor),
            });
        }
    }
    if synced_before && limit_s > 0.0 && movement.abs() > limit_s {
        return Err(StepRefused::Panic {
            movement,
            limit: limit_s,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_judged_by_the_panic_threshold_and_the_floor() {
        let now = 1_800_000_000.0;
        // The first synchronisation may step any distance...
        assert_eq!(check_step(86_400.0, now, false, 1000.0, None), Ok(()));
        // ...later ones only within the threshold, either way.
        assert_eq!(check_step(999.0, now, true, 1000.0, None), Ok(()));
        assert!(matches!(
            check_step(-3600.0, now, true, 1000.0, None),
            Err(StepRefused::Panic { .. })
        ));
        assert_eq!(check_step(1e6, now, true, 0.0, None), Ok(()));
        // Never before the floor, not even the first time.
        let floor = Some(now as i64 - 86_400);
        assert_eq!(check_step(0.0, now, false, 1000.0, floor), Ok(()));
        let back = now - 10.0 * 86_400.0;
        assert!(matches!(
            check_step(back - now, back, false, 1000.0, floor),
            Err(StepRefused::BeforeFloor { .. })
        ));
    }
}
