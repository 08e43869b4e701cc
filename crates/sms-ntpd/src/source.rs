//! One upstream source as a state machine, without I/O or clocks.
//!
//! The polling task measures; what a measurement (or its failure) does to
//! the source — reach register, poll interval backoff, kiss codes — and
//! how sources are classified after selection are pure methods here, so
//! they are tested directly with made-up results and times (as in
//! ntpd-rs). The engine only applies what they decide.

use crate::packet::from_short;
use crate::select::{select, Candidate, Filter, Sample, Selection};
use crate::upstream::{Measurement, QueryError};
use std::net::SocketAddr;

/// The reachability register of RFC 5905: the last eight polls, newest in
/// bit 0 (as `ntpq` shows it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reach(u8);

impl Reach {
    /// A poll is sent: the register shifts, the new poll counts as missed
    /// until an answer comes.
    pub fn poll_sent(&mut self) {
        self.0 <<= 1;
    }

    /// The poll was answered.
    pub fn answered(&mut self) {
        self.0 |= 1;
    }

    /// Whether any of the last eight polls was answered.
    pub fn is_reachable(self) -> bool {
        self.0 != 0
    }

    /// The register's bits.
    pub fn bits(self) -> u8 {
        self.0
    }
}

/// Where a source stands after the last selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// Not asked yet, or no answer and no error so far.
    New,
    /// The system peer: the time served comes from it.
    Selected,
    /// Usable and agreeing with the majority.
    Candidate,
    /// Disagrees with the majority.
    Falseticker,
    /// None of the last eight polls was answered.
    Unreachable,
    /// It answered DENY or RSTR: never asked again.
    Denied,
}

impl SourceState {
    /// The state's name in the status (`selected`, `falseticker`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::New => "new",
            SourceState::Selected => "selected",
            SourceState::Candidate => "candidate",
            SourceState::Falseticker => "falseticker",
            SourceState::Unreachable => "unreachable",
            SourceState::Denied => "denied",
        }
    }
}

/// The poll interval's bounds, log2 seconds.
#[derive(Debug, Clone, Copy)]
pub struct PollLimits {
    /// Shortest interval.
    pub min: u8,
    /// Longest interval.
    pub max: u8,
}

/// What one poll's result did to a source, for the log.
#[derive(Debug, Clone, PartialEq)]
pub enum PollOutcome {
    /// A sample was taken.
    Sample,
    /// KoD RATE: the poll interval grew to this.
    SlowDown(u8),
    /// KoD DENY or RSTR: the source is given up.
    Denied(String),
    /// No usable answer.
    Failed(String),
}

/// One upstream server as the engine knows it.
#[derive(Debug, Clone)]
pub struct Source {
    /// Its address.
    pub addr: SocketAddr,
    /// Its recent samples.
    pub filter: Filter,
    /// Which of the last eight polls it answered.
    pub reach: Reach,
    /// Current poll interval, log2 seconds.
    pub poll: u8,
    /// Steady samples in a row since the interval last changed.
    stable: u32,
    /// The kiss code that made it give up, if any.
    pub denied: Option<String>,
    /// Last problem seen, in words.
    pub last_error: Option<String>,
    /// Where it stands after the last selection.
    pub state: SourceState,
}

impl Source {
    /// A source not asked yet, polled at the shortest interval.
    pub fn new(addr: SocketAddr, limits: PollLimits) -> Source {
        Source {
            addr,
            filter: Filter::default(),
            reach: Reach::default(),
            poll: limits.min,
            stable: 0,
            denied: None,
            last_error: None,
            state: SourceState::New,
        }
    }

    /// Whether its samples may take part in selection.
    pub fn usable(&self) -> bool {
        self.reach.is_reachable() && self.denied.is_none()
    }

    /// Takes a poll's result at monotonic time `now`. During the initial
    /// burst the interval stays; afterwards four steady samples in a row
    /// lengthen it by one step (up to `limits.max`) and an unsteady one
    /// shortens it; KoD RATE lengthens it at once; DENY/RSTR give up.
    pub fn on_result(
        &mut self,
        result: &Result<Measurement, QueryError>,
        now: f64,
        in_burst: bool,
        limits: PollLimits,
    ) -> PollOutcome {
        match result {
            Ok(m) => {
                let prev = self.filter.best().map(|b| b.offset);
                self.filter.add(Sample {
                    offset: m.offset,
                    delay: m.delay,
                    root_delay: from_short(m.response.root_delay),
                    root_dispersion: from_short(m.response.root_dispersion),
                    stratum: m.response.stratum,
                    at: now,
                });
                self.reach.answered();
                self.last_error = None;
                let steady = prev
                    .is_some_and(|p| (p - m.offset).abs() < 4.0 * self.filter.jitter().max(0.001));
                if !in_burst {
                    if steady {
                        self.stable += 1;
                        if self.stable >= 4 && self.poll < limits.max {
                            self.poll += 1;
                            self.stable = 0;
                        }
                    } else {
                        self.stable = 0;
                        self.poll = self.poll.saturating_sub(1).max(limits.min);
                    }
                }
                PollOutcome::Sample
            }
            Err(QueryError::Kiss(code)) if code == "RATE" => {
                self.poll = (self.poll + 1).min(limits.max.max(limits.min + 1));
                self.last_error = Some("kiss-o'-death RATE: polling less often".into());
                PollOutcome::SlowDown(self.poll)
            }
            Err(QueryError::Kiss(code)) if code == "DENY" || code == "RSTR" => {
                self.denied = Some(code.clone());
                self.last_error = Some(format!(
                    "kiss-o'-death {code}: access denied, no longer polled"
                ));
                PollOutcome::Denied(code.clone())
            }
            Err(e) => {
                self.last_error = Some(e.to_string());
                PollOutcome::Failed(e.to_string())
            }
        }
    }

    /// Its state given the selection (`id` is its index).
    fn classify(&self, id: usize, sel: Option<&Selection>) -> SourceState {
        if self.denied.is_some() {
            SourceState::Denied
        } else if !self.reach.is_reachable() && self.filter.is_empty() {
            if self.last_error.is_some() {
                SourceState::Unreachable
            } else {
                SourceState::New
            }
        } else if !self.reach.is_reachable() {
            SourceState::Unreachable
        } else {
            match sel {
                Some(sel) if sel.system_peer.id == id => SourceState::Selected,
                Some(sel) if sel.falsetickers.contains(&id) => SourceState::Falseticker,
                _ => SourceState::Candidate,
            }
        }
    }
}

/// Chooses the time from the sources at monotonic time `now`: the
/// candidates (usable sources with two samples or more) and, once a
/// majority of the answering sources can take part, their selection.
/// Every source's state is updated to match. Pure: no clock is read.
pub fn choose(sources: &mut [Source], now: f64) -> (Vec<Candidate>, Option<Selection>) {
    let cands: Vec<Candidate> = sources
        .iter()
        .enumerate()
        .filter(|(_, s)| s.usable() && s.filter.len() >= 2)
        .filter_map(|(i, s)| s.filter.candidate(i, now))
        .collect();
    // Select only once a majority of the sources that answer can take
    // part: at start, the first source with two samples might be the
    // falseticker, and alone it would win.
    let answering = sources.iter().filter(|s| s.usable()).count();
    let sel = if cands.len() * 2 > answering {
        select(&cands)
    } else {
        None
    };
    for (i, s) in sources.iter_mut().enumerate() {
        s.state = s.classify(i, sel.as_ref());
    }
    (cands, sel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Packet;

    const LIMITS: PollLimits = PollLimits { min: 4, max: 10 };

    fn answer(offset: f64) -> Result<Measurement, QueryError> {
        let mut datagram = [0u8; 48];
        datagram[0] = 0x24; // version 4, server
        let mut response = Packet::parse(&datagram).unwrap();
        response.stratum = 2;
        Ok(Measurement {
            offset,
            delay: 0.001,
            response,
        })
    }

    fn source() -> Source {
        Source::new("192.0.2.1:123".parse().unwrap(), LIMITS)
    }

    #[test]
    fn steady_answers_lengthen_the_poll_up_to_the_maximum() {
        let mut s = source();
        s.reach.poll_sent();
        assert_eq!(
            s.on_result(&answer(0.5), 0.0, true, LIMITS),
            PollOutcome::Sample
        );
        assert_eq!(s.poll, 4, "no change during the burst");
        for t in 1..=4 {
            s.reach.poll_sent();
            s.on_result(&answer(0.5), t as f64, false, LIMITS);
        }
        assert_eq!(s.poll, 5, "four steady samples: one step longer");
        assert_eq!(s.reach.bits(), 0b11111);
        for t in 5..100 {
            s.on_result(&answer(0.5), t as f64, false, LIMITS);
        }
        assert_eq!(s.poll, LIMITS.max, "never past the maximum");
    }

    #[test]
    fn kiss_codes_slow_down_or_give_up() {
        let mut s = source();
        let rate = Err(QueryError::Kiss("RATE".into()));
        assert_eq!(
            s.on_result(&rate, 0.0, false, LIMITS),
            PollOutcome::SlowDown(5)
        );
        for _ in 0..20 {
            s.on_result(&rate, 0.0, false, LIMITS);
        }
        assert_eq!(s.poll, LIMITS.max, "RATE never goes past the maximum");
        let deny = Err(QueryError::Kiss("DENY".into()));
        assert_eq!(
            s.on_result(&deny, 0.0, false, LIMITS),
            PollOutcome::Denied("DENY".into())
        );
        assert!(!s.usable());
        let (_, sel) = choose(std::slice::from_mut(&mut s), 1.0);
        assert!(sel.is_none());
        assert_eq!(s.state, SourceState::Denied);
    }

    #[test]
    fn states_follow_reach_and_the_majority() {
        let mut sources: Vec<Source> = (1..=4)
            .map(|i| Source::new(format!("192.0.2.{i}:123").parse().unwrap(), LIMITS))
            .collect();
        let (_, sel) = choose(&mut sources, 0.0);
        assert!(sel.is_none());
        assert!(sources.iter().all(|s| s.state == SourceState::New));
        // Three agree at +1 s, one says -30 s.
        for (i, s) in sources.iter_mut().enumerate() {
            let offset = if i == 3 { -30.0 } else { 1.0 };
            for t in 0..2 {
                s.reach.poll_sent();
                s.on_result(&answer(offset), t as f64, true, LIMITS);
            }
        }
        let (cands, sel) = choose(&mut sources, 2.0);
        assert_eq!(cands.len(), 4);
        let sel = sel.expect("a majority agrees");
        assert!((sel.offset - 1.0).abs() < 0.01, "{}", sel.offset);
        assert_eq!(sources[3].state, SourceState::Falseticker);
        assert_eq!(
            sources
                .iter()
                .filter(|s| s.state == SourceState::Selected)
                .count(),
            1
        );
        // Eight polls without an answer: unreachable.
        for _ in 0..8 {
            sources[0].reach.poll_sent();
        }
        choose(&mut sources, 3.0);
        assert_eq!(sources[0].state, SourceState::Unreachable);
    }
}
