//! Clock filter per source and source selection (RFC 5905 §10–11, simplified).
//!
//! Each source keeps its last 8 samples; the one with the smallest round-trip
//! delay is its best estimate. Selection intersects the sources' correctness
//! intervals (offset ± root distance) in the manner of Marzullo's algorithm:
//! the largest set of agreeing sources (a majority) are truechimers, the rest
//! falsetickers. The system offset is the survivors' offsets weighted by the
//! inverse of their root distance.

use std::collections::VecDeque;

/// Samples kept per source.
pub const FILTER_LEN: usize = 8;
/// Floor of a root distance, seconds: loopback delays are microseconds,
/// agreeing sources must still overlap.
pub const MIN_DISTANCE: f64 = 0.001;
/// Frequency tolerance used to age dispersion, seconds per second.
pub const PHI: f64 = 15e-6;

/// One measurement against a source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Offset of the source's clock from ours, seconds.
    pub offset: f64,
    /// Round-trip delay, seconds.
    pub delay: f64,
    /// The source's root delay, seconds.
    pub root_delay: f64,
    /// The source's root dispersion, seconds.
    pub root_dispersion: f64,
    /// The source's stratum.
    pub stratum: u8,
    /// When it was taken (monotonic seconds).
    pub at: f64,
}

/// The clock filter of one source.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    samples: VecDeque<Sample>,
}

impl Filter {
    /// Adds a sample, dropping the oldest beyond [`FILTER_LEN`].
    pub fn add(&mut self, s: Sample) {
        if self.samples.len() == FILTER_LEN {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }

    /// Forgets every sample (after a clock step).
    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True without samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The sample with the smallest delay.
    pub fn best(&self) -> Option<Sample> {
        self.samples
            .iter()
            .copied()
            .min_by(|a, b| a.delay.total_cmp(&b.delay))
    }

    /// RMS of the samples' offsets around the best one.
    pub fn jitter(&self) -> f64 {
        let Some(best) = self.best() else { return 0.0 };
        if self.samples.len() < 2 {
            return 0.0;
        }
        let sum: f64 = self
            .samples
            .iter()
            .map(|s| (s.offset - best.offset).powi(2))
            .sum();
        (sum / (self.samples.len() - 1) as f64).sqrt()
    }

    /// A selection candidate at monotonic time `now`.
    pub fn candidate(&self, id: usize, now: f64) -> Option<Candidate> {
        let best = self.best()?;
        let jitter = self.jitter();
        let age = (now - best.at).max(0.0);
        let distance =
            (best.root_delay + best.delay) / 2.0 + best.root_dispersion + PHI * age + jitter;
        Some(Candidate {
            id,
            offset: best.offset,
            distance: distance.max(MIN_DISTANCE),
            jitter,
            stratum: best.stratum,
            delay: best.delay,
            root_delay: best.root_delay,
            root_dispersion: best.root_dispersion,
        })
    }
}

/// A source as selection sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Caller's identifier of the source.
    pub id: usize,
    /// Offset, seconds.
    pub offset: f64,
    /// Root distance (half-width of the correctness interval), seconds.
    pub distance: f64,
    /// Jitter, seconds.
    pub jitter: f64,
    /// Stratum of the source.
    pub stratum: u8,
    /// Round-trip delay to it, seconds.
    pub delay: f64,
    /// Its root delay, seconds.
    pub root_delay: f64,
    /// Its root dispersion, seconds.
    pub root_dispersion: f64,
}

/// The result of selection.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Ids of the truechimers.
    pub survivors: Vec<usize>,
    /// Ids of the falsetickers.
    pub falsetickers: Vec<usize>,
    /// Combined offset, seconds.
    pub offset: f64,
    /// Combined jitter, seconds.
    pub jitter: f64,
    /// The system peer: the survivor with the smallest distance.
    pub system_peer: Candidate,
}

/// Selects truechimers among `cands`. `None` when no majority agrees.
pub fn select(cands: &[Candidate]) -> Option<Selection> {
    let n = cands.len();
    if n == 0 {
        return None;
    }
    // Endpoints: (value, kind) with kind -1 = low end, 0 = midpoint, +1 = high end.
    let mut ends: Vec<(f64, i8)> = Vec::with_capacity(3 * n);
    for c in cands {
        ends.push((c.offset - c.distance, -1));
        ends.push((c.offset, 0));
        ends.push((c.offset + c.distance, 1));
    }
    ends.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut interval = None;
    // Allow f falsetickers, as long as the rest is a majority.
    for f in 0..n {
        let need = n - f;
        if need * 2 <= n {
            break;
        }
        let (mut low, mut high) = (None, None);
        let (mut chime, mut found) = (0i32, 0usize);
        for &(v, kind) in &ends {
            chime -= kind as i32;
            if chime >= need as i32 {
                low = Some(v);
                break;
            }
            if kind == 0 {
                found += 1;
            }
        }
        chime = 0;
        for &(v, kind) in ends.iter().rev() {
            chime += kind as i32;
            if chime >= need as i32 {
                high = Some(v);
                break;
            }
            if kind == 0 {
                found += 1;
            }
        }
        if let (Some(l), Some(h)) = (low, high) {
            if found <= f && l <= h {
                interval = Some((l, h));
                break;
            }
        }
    }
    let (low, high) = interval?;
    let (mut survivors, mut falsetickers) = (Vec::new(), Vec::new());
    let mut chosen: Vec<&Candidate> = Vec::new();
    for c in cands {
        // A truechimer's interval overlaps the intersection.
        if c.offset + c.distance >= low && c.offset - c.distance <= high {
            survivors.push(c.id);
            chosen.push(c);
        } else {
            falsetickers.push(c.id);
        }
    }
    let wsum: f64 = chosen.iter().map(|c| 1.0 / c.distance).sum();
    let offset = chosen.iter().map(|c| c.offset / c.distance).sum::<f64>() / wsum;
    let spread = chosen
        .iter()
        .map(|c| (c.offset - offset).powi(2) / c.distance)
        .sum::<f64>()
        / wsum;
    let peer_jitter = chosen
        .iter()
        .map(|c| c.jitter.powi(2) / c.distance)
        .sum::<f64>()
        / wsum;
    let system_peer = **chosen
        .iter()
        .min_by(|a, b| a.distance.total_cmp(&b.distance))?;
    Some(Selection {
        survivors,
        falsetickers,
        offset,
        jitter: (spread + peer_jitter).sqrt(),
        system_peer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cand(id: usize, offset: f64, distance: f64) -> Candidate {
        Candidate {
            id,
            offset,
            distance,
            jitter: 0.0,
            stratum: 1,
            delay: 0.0,
            root_delay: 0.0,
            root_dispersion: 0.0,
        }
    }

    #[test]
    fn falseticker_is_rejected() {
        let c = [
            cand(0, 3.250, 0.002),
            cand(1, 3.2505, 0.002),
            cand(2, 3.2498, 0.002),
            cand(3, -40.0, 0.002),
        ];
        let s = select(&c).unwrap();
        assert_eq!(s.survivors, vec![0, 1, 2]);
        assert_eq!(s.falsetickers, vec![3]);
        assert!((s.offset - 3.25).abs() < 0.001, "{}", s.offset);
    }

    #[test]
    fn no_majority_no_selection() {
        let c = [cand(0, 1.0, 0.001), cand(1, 2.0, 0.001)];
        assert!(select(&c).is_none());
        let c = [
            cand(0, 1.0, 0.001),
            cand(1, 5.0, 0.001),
            cand(2, 9.0, 0.001),
        ];
        assert!(select(&c).is_none());
    }

    #[test]
    fn single_source_is_selected() {
        let s = select(&[cand(7, 0.5, 0.01)]).unwrap();
        assert_eq!(s.survivors, vec![7]);
        assert_eq!(s.offset, 0.5);
    }

    #[test]
    fn filter_prefers_the_smallest_delay() {
        let mut f = Filter::default();
        for (i, (off, delay)) in [(0.010, 0.050), (0.001, 0.001), (0.020, 0.080)]
            .iter()
            .enumerate()
        {
            f.add(Sample {
                offset: *off,
                delay: *delay,
                root_delay: 0.0,
                root_dispersion: 0.0,
                stratum: 1,
                at: i as f64,
            });
        }
        assert_eq!(f.best().unwrap().offset, 0.001);
        for i in 0..20 {
            f.add(Sample {
                offset: 0.0,
                delay: 1.0,
                root_delay: 0.0,
                root_dispersion: 0.0,
                stratum: 1,
                at: i as f64,
            });
        }
        assert_eq!(f.len(), FILTER_LEN);
    }

    proptest! {
        /// A majority of agreeing sources is always found, whatever the
        /// minority does, and the combined offset lies within the majority.
        #[test]
        fn majority_wins(good in 2usize..6, bad in proptest::collection::vec(-100.0f64..100.0, 0..2), centre in -10.0f64..10.0) {
            let mut c: Vec<Candidate> = (0..good).map(|i| cand(i, centre + i as f64 * 1e-4, 0.002)).collect();
            for (j, b) in bad.iter().enumerate() {
                if (b - centre).abs() > 0.01 {
                    c.push(cand(100 + j, *b, 0.002));
                }
            }
            let s = select(&c).unwrap();
            for i in 0..good {
                prop_assert!(s.survivors.contains(&i));
            }
            prop_assert!((s.offset - centre).abs() < 0.002);
        }
    }
}
