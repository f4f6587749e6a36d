//! Rolling windows of HDR histograms.
//!
//! A [`Series`] keeps one histogram per [`SLOT`] (15 s) for the last [`SLOTS`] slots (15 min),
//! allocated only for slots that saw a value. A window of N minutes merges the slots that
//! cover it, so the 1, 5 and 15 minute figures come from the same recorded values. Values
//! are microseconds, clamped to [`MAX_US`]; two significant digits (±1 %).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Width of one slot.
pub const SLOT: Duration = Duration::from_secs(15);
/// Slots kept: 15 minutes.
pub const SLOTS: usize = 60;
/// Largest value kept apart (10 minutes); longer values count as this.
pub const MAX_US: u64 = 600_000_000;

/// The windows every statistic is reported over.
pub const WINDOWS: [(&str, u64); 3] = [("1m", 60), ("5m", 300), ("15m", 900)];

#[derive(Default)]
struct Slot {
    /// Index of the slot since the epoch of the series' clock (`None`: never used).
    index: Option<u64>,
    hist: Option<Box<Histogram<u32>>>,
    count: u64,
    errors: u64,
    sum_us: u64,
}

/// One measured quantity (a route, a stage) over the last 15 minutes.
pub struct Series {
    epoch: Instant,
    slots: Vec<Slot>,
}

/// Summary of a series over one window.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub errors: u64,
    /// Values per second over the part of the window the process has been up.
    pub rate: f64,
    pub error_rate: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn new_hist() -> Option<Box<Histogram<u32>>> {
    Histogram::new_with_max(MAX_US, 2).ok().map(Box::new)
}

impl Series {
    pub fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
        }
    }

    fn index_at(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.epoch).as_millis() / SLOT.as_millis()) as u64
    }

    /// Records `n` values of `micros` (an error when `error`).
    pub fn record_n(&mut self, at: Instant, micros: u64, n: u64, error: bool) {
        let index = self.index_at(at);
        let slot = &mut self.slots[(index % SLOTS as u64) as usize];
        if slot.index != Some(index) {
            slot.index = Some(index);
            slot.count = 0;
            slot.errors = 0;
            slot.sum_us = 0;
            if let Some(h) = slot.hist.as_mut() {
                h.reset();
            }
        }
        let hist = match slot.hist.as_mut() {
            Some(h) => h,
            None => match new_hist() {
                Some(h) => slot.hist.insert(h),
                None => return,
            },
        };
        let v = micros.clamp(1, MAX_US);
        let _ = hist.record_n(v, u32::try_from(n).unwrap_or(u32::MAX));
        slot.count += n;
        slot.sum_us = slot.sum_us.saturating_add(v.saturating_mul(n));
        if error {
            slot.errors += n;
        }
    }

    pub fn record(&mut self, at: Instant, d: Duration, error: bool) {
        self.record_n(at, d.as_micros() as u64, 1, error);
    }

    /// The summary over the last `secs` seconds (rounded up to whole slots), as seen at `now`.
    pub fn summary(&self, now: Instant, secs: u64) -> Summary {
        let current = self.index_at(now);
        let n = secs.div_ceil(SLOT.as_secs()).clamp(1, SLOTS as u64);
        let oldest = current.saturating_sub(n - 1);
        let mut merged: Option<Histogram<u32>> = None;
        let (mut count, mut errors, mut sum_us) = (0u64, 0u64, 0u64);
        for slot in &self.slots {
            let Some(i) = slot.index else { continue };
            if i < oldest || i > current || slot.count == 0 {
                continue;
            }
            count += slot.count;
            errors += slot.errors;
            sum_us = sum_us.saturating_add(slot.sum_us);
            if let Some(h) = &slot.hist {
                match merged.as_mut() {
                    Some(m) => {
                        let _ = m.add(h.as_ref());
                    }
                    None => merged = Some(h.as_ref().clone()),
                }
            }
        }
        // Seconds the window really covers: whole old slots plus the current partial one,
        // never more than the process has been recording.
        let elapsed = now.saturating_duration_since(self.epoch).as_secs_f64();
        let into_current = elapsed - (current * SLOT.as_secs()) as f64;
        let covered = ((n - 1) * SLOT.as_secs()) as f64 + into_current;
        let covered = covered.min(elapsed).max(1.0);
        let q = |h: &Histogram<u32>, p: f64| h.value_at_quantile(p) as f64 / 1000.0;
        match merged {
            Some(h) if count > 0 => Summary {
                count,
                errors,
                rate: count as f64 / covered,
                error_rate: errors as f64 / count as f64,
                mean_ms: sum_us as f64 / count as f64 / 1000.0,
                p50_ms: q(&h, 0.50),
                p95_ms: q(&h, 0.95),
                p99_ms: q(&h, 0.99),
                max_ms: h.max() as f64 / 1000.0,
            },
            _ => Summary::default(),
        }
    }

    /// Adds another series' slots (same epoch) into this one.
    pub fn merge_from(&mut self, other: &Series) {
        for (mine, theirs) in self.slots.iter_mut().zip(&other.slots) {
            let Some(index) = theirs.index else { continue };
            if theirs.count == 0 {
                continue;
            }
            if mine.index != Some(index) {
                if mine.index.is_some_and(|i| i > index) {
                    continue;
                }
                *mine = Slot {
                    index: Some(index),
                    ..Slot::default()
                };
            }
            if let Some(h) = &theirs.hist {
                match mine.hist.as_mut() {
                    Some(m) => {
                        let _ = m.add(h.as_ref());
                    }
                    None => mine.hist = Some(h.clone()),
                }
            }
            mine.count += theirs.count;
            mine.errors += theirs.errors;
            mine.sum_us = mine.sum_us.saturating_add(theirs.sum_us);
        }
    }

    /// True when nothing was recorded in the last 15 minutes.
    pub fn is_idle(&self, now: Instant) -> bool {
        let current = self.index_at(now);
        let oldest = current.saturating_sub(SLOTS as u64 - 1);
        !self
            .slots
            .iter()
            .any(|s| s.count > 0 && s.index.is_some_and(|i| i >= oldest))
    }
}

/// Holt's linear trend (double exponential smoothing) of a sampled quantity.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Holt {
    alpha: f64,
    beta: f64,
    /// Smoothed level.
    pub level: f64,
    /// Smoothed change per sample.
    pub trend: f64,
    samples: u64,
}

impl Holt {
    pub fn new(alpha: f64, beta: f64) -> Self {
        Self {
            alpha,
            beta,
            level: 0.0,
            trend: 0.0,
            samples: 0,
        }
    }

    pub fn update(&mut self, x: f64) {
        match self.samples {
            0 => self.level = x,
            1 => {
                self.trend = x - self.level;
                self.level = x;
            }
            _ => {
                let prev = self.level;
                self.level = self.alpha * x + (1.0 - self.alpha) * (self.level + self.trend);
                self.trend = self.beta * (self.level - prev) + (1.0 - self.beta) * self.trend;
            }
        }
        self.samples += 1;
    }

    /// The value expected `steps` samples ahead.
    pub fn forecast(&self, steps: f64) -> f64 {
        self.level + self.trend * steps
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_merge_slots_and_forget_old_ones() {
        let t0 = Instant::now();
        let mut s = Series::new(t0);
        for ms in 1..=100u64 {
            s.record(t0, Duration::from_millis(ms), ms > 90);
        }
        let now = t0 + Duration::from_secs(10);
        let sum = s.summary(now, 60);
        assert_eq!(sum.count, 100);
        assert_eq!(sum.errors, 10);
        assert!((sum.p50_ms - 50.0).abs() <= 1.0, "{sum:?}");
        assert!((sum.p95_ms - 95.0).abs() <= 1.5, "{sum:?}");
        assert!((sum.mean_ms - 50.5).abs() < 0.6, "{sum:?}");
        assert!((sum.rate - 10.0).abs() < 0.01, "{sum:?}");
        // Six minutes later the values have left the 1 and 5 minute windows only.
        let later = t0 + Duration::from_secs(6 * 60);
        s.record(later, Duration::from_millis(500), false);
        assert_eq!(s.summary(later, 60).count, 1);
        assert_eq!(s.summary(later, 300).count, 1);
        assert_eq!(s.summary(later, 900).count, 101);
        // The ring reuses a slot after 15 minutes without mixing old values in.
        let much_later = t0 + Duration::from_secs(15 * 60 + 5);
        s.record(much_later, Duration::from_millis(7), false);
        let sum = s.summary(much_later, 900);
        assert_eq!(sum.count, 2, "{sum:?}");
        assert!(!s.is_idle(much_later));
        assert!(s.is_idle(much_later + Duration::from_secs(16 * 60)));
    }

    #[test]
    fn holt_follows_a_linear_trend() {
        let mut h = Holt::new(0.5, 0.3);
        for i in 0..30 {
            h.update(10.0 + 2.0 * f64::from(i));
        }
        assert!((h.trend - 2.0).abs() < 0.05, "{h:?}");
        assert!((h.forecast(10.0) - (68.0 + 20.0)).abs() < 1.0, "{h:?}");
    }
}
