//! Lip-sync from the sound itself, for a recording (or any voice without phoneme timings):
//! every 10 ms hop of the audio becomes a mouth shape from its loudness and spectral shape,
//! written as the phoneme whose viseme it is, so the timeline's [`super::script::VisemeTrack`]
//! blends them with the same co-articulation as synthesised speech.
//!
//! Per hop, over a 30 ms window: the level in dB below the recording's loud speech (the
//! 95th percentile of hop levels), the share of energy below ~900 Hz (a one-pole low-pass)
//! and the zero-crossing rate. Quiet hops are silence (mouth closed); noisy, high-crossing
//! hops with little low energy are fricatives (teeth together: `s`); the rest are vowels,
//! opening with loudness — wide and open when bright, rounded when dark — so how far the mouth
//! opens follows the envelope of the sound. Runs shorter than two hops merge into their
//! neighbour, so the mouth does not flicker.

use super::voice::PhonemeAt;

/// Hop between analysed frames.
pub const HOP_MS: u32 = 10;
const WINDOW_MS: u32 = 30;
/// A hop this many dB under the loud speech level is silence.
const GATE_DB: f64 = 28.0;
/// Absolute floor (of 32768) under which a hop is silence whatever the level.
const FLOOR: f64 = 120.0;

/// One analysed hop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hop {
    /// Level 0 (at the gate) … 1 (loud speech).
    pub level: f64,
    /// Share of the energy below ~900 Hz.
    pub low: f64,
    /// Zero crossings per sample.
    pub zcr: f64,
}

/// The hops of `samples` (mono, `rate` Hz).
pub fn hops(samples: &[i16], rate: u32) -> Vec<Hop> {
    if rate == 0 || samples.is_empty() {
        return Vec::new();
    }
    let hop = (rate * HOP_MS / 1000).max(1) as usize;
    let window = (rate * WINDOW_MS / 1000).max(1) as usize;
    // One-pole low-pass at ~900 Hz.
    let a = (-2.0 * std::f64::consts::PI * 900.0 / f64::from(rate)).exp();
    let mut lp = Vec::with_capacity(samples.len());
    let mut y = 0.0;
    for s in samples {
        y = (1.0 - a) * f64::from(*s) + a * y;
        lp.push(y);
    }
    let count = samples.len().div_ceil(hop);
    let mut raw: Vec<(f64, f64, f64)> = Vec::with_capacity(count);
    for i in 0..count {
        let centre = i * hop + hop / 2;
        let from = centre.saturating_sub(window / 2);
        let to = (from + window).min(samples.len());
        let part = &samples[from..to];
        let n = part.len().max(1) as f64;
        let energy: f64 = part.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / n;
        let low: f64 = lp[from..to].iter().map(|v| v * v).sum::<f64>() / n;
        let crossings = part
            .windows(2)
            .filter(|w| (w[0] >= 0) != (w[1] >= 0))
            .count() as f64;
        raw.push((
            energy.sqrt(),
            (low / energy.max(1e-9)).min(1.0),
            crossings / n,
        ));
    }
    let mut loud: Vec<f64> = raw.iter().map(|r| r.0).filter(|r| *r > FLOOR).collect();
    loud.sort_by(f64::total_cmp);
    let reference = loud
        .get(((loud.len() as f64 * 0.95) as usize).min(loud.len().saturating_sub(1)))
        .copied()
        .unwrap_or(FLOOR)
        .max(FLOOR);
    raw.into_iter()
        .map(|(rms, low, zcr)| {
            let db = 20.0 * (rms.max(1e-9) / reference).log10();
            let level = if rms < FLOOR {
                0.0
            } else {
                ((db + GATE_DB) / GATE_DB).clamp(0.0, 1.0)
            };
            Hop { level, low, zcr }
        })
        .collect()
}

/// The phoneme (an espeak mnemonic whose viseme is the hop's mouth shape) of one hop.
fn shape(h: &Hop) -> &'static str {
    if h.level <= 0.0 {
        return "_";
    }
    if h.zcr > 0.22 && h.low < 0.35 && h.level < 0.8 {
        return "s";
    }
    let bright = h.low < 0.75;
    match h.level {
        l if l > 0.72 => {
            if bright {
                "a"
            } else {
                "o"
            }
        }
        l if l > 0.5 => {
            if bright {
                "e"
            } else {
                "o"
            }
        }
        l if l > 0.3 => {
            if bright {
                "I"
            } else {
                "u"
            }
        }
        _ => "m",
    }
}

/// The mouth shapes of a recording as timed phonemes (see the module doc).
pub fn phonemes(samples: &[i16], rate: u32) -> Vec<PhonemeAt> {
    let shapes: Vec<&str> = hops(samples, rate).iter().map(shape).collect();
    // Runs of one hop take their neighbour's shape (the earlier one), so nothing flickers.
    let mut smooth = shapes.clone();
    for i in 1..shapes.len().saturating_sub(1) {
        if shapes[i] != shapes[i - 1] && shapes[i] != shapes[i + 1] {
            smooth[i] = smooth[i - 1];
        }
    }
    let mut out: Vec<PhonemeAt> = Vec::new();
    for (i, name) in smooth.into_iter().enumerate() {
        if out.last().is_some_and(|p| p.name == name) {
            continue;
        }
        out.push(PhonemeAt {
            name: name.to_string(),
            start_ms: i as u32 * HOP_MS,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tone burst: `ms` of a sine at `hz` with amplitude `amp`, or silence (amp 0).
    fn tone(rate: u32, ms: u32, hz: f64, amp: f64) -> Vec<i16> {
        (0..rate * ms / 1000)
            .map(|i| {
                let t = f64::from(i) / f64::from(rate);
                (amp * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn silence_closes_loud_low_sound_rounds_loud_bright_sound_opens_and_hiss_is_teeth() {
        let rate = 24_000;
        let mut s = tone(rate, 300, 0.0, 0.0);
        s.extend(tone(rate, 300, 220.0, 12_000.0)); // loud and dark: o
        s.extend(tone(rate, 300, 0.0, 0.0));
        s.extend(tone(rate, 300, 2_500.0, 12_000.0)); // loud and bright: a
        s.extend(tone(rate, 300, 0.0, 0.0));
        // Hiss: a deterministic noise-like signal, quieter.
        let mut x: u32 = 12345;
        s.extend((0..rate * 300 / 1000).map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            ((x >> 16) as i16 as f64 * 0.12) as i16
        }));
        s.extend(tone(rate, 300, 0.0, 0.0));
        let ph = phonemes(&s, rate);
        let at = |ms: u32| {
            ph.iter()
                .rev()
                .find(|p| p.start_ms <= ms)
                .map(|p| p.name.as_str())
                .unwrap_or("_")
        };
        assert_eq!(at(150), "_");
        assert_eq!(at(450), "o");
        assert_eq!(at(750), "_");
        assert_eq!(at(1050), "a");
        assert_eq!(at(1650), "s");
        assert_eq!(at(2000), "_");
        assert!(
            ph.windows(2)
                .all(|w| w[0].name != w[1].name && w[0].start_ms < w[1].start_ms)
        );
        assert!(phonemes(&[], rate).is_empty());
        assert!(phonemes(&s, 0).is_empty());
    }

    #[test]
    fn the_level_follows_the_envelope() {
        let rate = 24_000;
        let mut s = Vec::new();
        for amp in [500.0, 2_000.0, 8_000.0, 16_000.0] {
            s.extend(tone(rate, 200, 300.0, amp));
        }
        let h = hops(&s, rate);
        let mean = |from: usize, to: usize| {
            h[from..to].iter().map(|x| x.level).sum::<f64>() / (to - from) as f64
        };
        let levels = [mean(5, 15), mean(25, 35), mean(45, 55), mean(65, 75)];
        assert!(levels.windows(2).all(|w| w[0] < w[1]), "{levels:?}");
    }
}
