//! Script → timeline. Splits the script at its pauses ([`super::text`]), has the voice speak
//! each run of text (phoneme timings come from the synthesiser) with exact silence for each
//! `<break/>` between them, times the script's own words against that speech
//! ([`super::align`]), maps phonemes to visemes, blends neighbouring mouth shapes
//! (co-articulation: each viseme is fully formed at its phoneme's start and the mouth moves
//! towards the next one up to [`ANTICIPATION_MS`] ahead, see [`VisemeTrack`]), and schedules
//! blinks, gaze and idle head/breathing motion from the seed. Same input + seed → the same
//! timeline.

use bytemuck::{Pod, Zeroable};

use crate::render::params::VideoParams;

use super::align::{self, WordAt};
use super::listen;
use super::text::{self, MarkupError, Piece};
use super::voice::{PhonemeAt, Speech, TtsBackend, VoiceError};

/// How far ahead of a phoneme the mouth starts moving towards its shape.
pub const ANTICIPATION_MS: f64 = 60.0;
/// The share of a viseme's own time that anticipation of the next may take.
const ANTICIPATION_SHARE: f64 = 0.6;

/// Per-frame drive of the avatar kernel. `#[repr(C)]`: uploaded to the GPU as is.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Default, Pod, Zeroable)]
pub struct FrameParams {
    /// Jaw/lip opening 0–1.
    pub mouth_open: f32,
    /// Lip spread (−1 narrow … 1 wide).
    pub mouth_wide: f32,
    /// Lip rounding 0–1.
    pub mouth_round: f32,
    /// Teeth visibility 0–1.
    pub teeth: f32,
    /// Tongue visibility 0–1.
    pub tongue: f32,
    /// Eyelid closure 0–1.
    pub blink: f32,
    pub gaze_x: f32,
    pub gaze_y: f32,
    /// Head rotation in radians.
    pub yaw: f32,
    pub pitch: f32,
    pub roll: f32,
    /// Breathing offset (fraction of head height).
    pub breath: f32,
    /// Smile −1…1 (expression).
    pub smile: f32,
    /// Brow raise −1…1 (expression + emphasis).
    pub brow: f32,
    /// Time in seconds.
    pub time: f32,
    /// Index of the word being spoken (captions), −1 when none.
    pub word: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Viseme {
    Sil,
    PP,
    FF,
    TH,
    DD,
    KK,
    CH,
    SS,
    RR,
    AA,
    E,
    IH,
    OH,
    OU,
    H,
}

/// (open, wide, round, teeth, tongue) of each viseme.
fn shape(v: Viseme) -> [f64; 5] {
    match v {
        Viseme::Sil => [0.0, 0.0, 0.0, 0.0, 0.0],
        Viseme::PP => [0.0, -0.1, 0.1, 0.0, 0.0],
        Viseme::FF => [0.08, 0.1, 0.0, 1.0, 0.0],
        Viseme::TH => [0.2, 0.1, 0.0, 0.7, 0.9],
        Viseme::DD => [0.25, 0.2, 0.0, 0.6, 0.5],
        Viseme::KK => [0.3, 0.1, 0.0, 0.4, 0.2],
        Viseme::CH => [0.25, -0.15, 0.55, 0.7, 0.0],
        Viseme::SS => [0.12, 0.35, 0.0, 0.9, 0.0],
        Viseme::RR => [0.25, -0.1, 0.45, 0.3, 0.2],
        Viseme::AA => [0.8, 0.3, 0.0, 0.4, 0.15],
        Viseme::E => [0.45, 0.45, 0.0, 0.5, 0.1],
        Viseme::IH => [0.3, 0.65, 0.0, 0.6, 0.0],
        Viseme::OH => [0.6, -0.25, 0.7, 0.2, 0.0],
        Viseme::OU => [0.3, -0.4, 1.0, 0.1, 0.0],
        Viseme::H => [0.35, 0.1, 0.0, 0.3, 0.0],
    }
}

/// The viseme of an espeak phoneme mnemonic.
pub fn viseme_of(phoneme: &str) -> Viseme {
    if super::voice::is_pause(phoneme) {
        return Viseme::Sil;
    }
    let p = phoneme.trim_start_matches(['\'', ',', '%', '=']);
    // Variants (`t2`, `l/2`) and length marks (`i:`) keep their base sound's shape.
    let base = p.trim_end_matches(|c: char| c.is_ascii_digit() || c == ':' || c == '/');
    let p = if base.is_empty() { p } else { base };
    match p {
        "p" | "b" | "m" | "m-" => Viseme::PP,
        "f" | "v" => Viseme::FF,
        "T" | "D" => Viseme::TH,
        "t" | "d" | "n" | "l" | "t#" | "d#" | "n-" | "l-" | "@L" | "L" => Viseme::DD,
        "k" | "g" | "N" | "x" | "q" | "G" => Viseme::KK,
        "tS" | "dZ" | "S" | "Z" | "S;" | "C" => Viseme::CH,
        "s" | "z" | "ts" | "dz" => Viseme::SS,
        "r" | "r-" | "R" | "*" | "R2" => Viseme::RR,
        "w" => Viseme::OU,
        "j" => Viseme::IH,
        "h" => Viseme::H,
        _ => match p.chars().next() {
            Some('a' | 'A' | 'V' | '&') => Viseme::AA,
            Some('e' | 'E' | '@' | '3') => Viseme::E,
            Some('i' | 'I') => Viseme::IH,
            Some('o' | 'O' | '0') => Viseme::OH,
            Some('u' | 'U' | 'y' | 'Y') => Viseme::OU,
            _ => Viseme::E,
        },
    }
}

/// A tiny deterministic generator (SplitMix64), so timelines never change with a crate update.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo)
    }
}

/// Everything the renderer and encoder need for one video.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub fps: u32,
    pub frames: Vec<FrameParams>,
    /// `None` when the video has no voice.
    pub speech: Option<Speech>,
    /// Every word of the script, in order, timed against the speech (empty without a voice).
    pub words: Vec<WordAt>,
    /// The mouth's drive: which viseme shows when (empty without speech).
    pub visemes: VisemeTrack,
}

impl Timeline {
    pub fn duration_s(&self) -> f64 {
        self.frames.len() as f64 / f64::from(self.fps)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    #[error(transparent)]
    Voice(#[from] VoiceError),
    #[error("the script produced no speech")]
    Empty,
    #[error("the script's markup: {0}")]
    Markup(#[from] MarkupError),
}

/// Builds the timeline of a video whose script a voice reads (or that has no sound).
pub fn build(params: &VideoParams, tts: &dyn TtsBackend) -> Result<Timeline, TimelineError> {
    build_with(params, tts, None)
}

/// Builds the timeline of a video; with `recording` (mono PCM, the video's sound track), the
/// mouth follows that sound ([`super::listen`]) and there are no words to caption.
pub fn build_with(
    params: &VideoParams,
    tts: &dyn TtsBackend,
    recording: Option<Speech>,
) -> Result<Timeline, TimelineError> {
    let (speech, words) = match (recording, &params.voice) {
        (Some(mut rec), _) => {
            rec.phonemes = listen::phonemes(&rec.samples, rec.sample_rate);
            rec.marks.clear();
            (Some(rec), Vec::new())
        }
        (None, Some(v)) => {
            let (s, w) = speak(&text::parse(&params.script)?, v, tts)?;
            (Some(s), w)
        }
        (None, None) => (None, Vec::new()),
    };
    let fps = params.fps.max(1);
    let (duration_s, phonemes) = match &speech {
        Some(s) if s.duration_ms() > 0 => (f64::from(s.duration_ms()) / 1000.0, s.phonemes.clone()),
        Some(_) => return Err(TimelineError::Empty),
        None => (params.estimate_duration().0, Vec::new()),
    };
    let n = ((duration_s * f64::from(fps)).round() as usize).max(1);
    let visemes = VisemeTrack::new(&phonemes, duration_s * 1000.0);

    let mut rng = Rng::new(params.seed);
    let motion = Motion::new(&mut rng, duration_s, &params.avatar.expression);
    let frames = (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(fps);
            let t_ms = t * 1000.0;
            let word = words
                .iter()
                .rposition(|w| f64::from(w.start_ms) <= t_ms)
                .map_or(-1.0, |w| w as f32);
            motion.frame(t, visemes.shape_at(t_ms), word, nod(&words, t))
        })
        .collect();
    Ok(Timeline {
        fps,
        frames,
        speech,
        words,
        visemes,
    })
}

/// The script spoken: each run of text by the voice, each break as that much digital silence
/// (with a pause phoneme, so the mouth is closed), one after the other; and the script's
/// words timed against it. Runs without a word (punctuation between two breaks) are skipped.
fn speak(
    pieces: &[Piece],
    voice: &crate::render::params::VoiceParams,
    tts: &dyn TtsBackend,
) -> Result<(Speech, Vec<WordAt>), TimelineError> {
    let mut spoken = Vec::new();
    for piece in pieces {
        if let Piece::Text(t) = piece {
            let s = align::spoken(t);
            if !s.is_empty() {
                let speech = tts.speak(&s.text, voice)?;
                spoken.push((s, speech));
            }
        }
    }
    // A script without a single word ("...") is read as it is: the voice's pauses for its
    // punctuation (and the breaks) make a silent video of that length.
    let mut out = if spoken.is_empty() {
        let plain: Vec<&str> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Text(t) => Some(t.as_str()),
                Piece::Break(_) => None,
            })
            .collect();
        tts.speak(&align::normalise(&plain.join(" ")), voice)?
    } else {
        Speech {
            sample_rate: spoken[0].1.sample_rate,
            ..Speech::default()
        }
    };
    out.marks.clear();
    let rate = out.sample_rate;
    if rate == 0 {
        return Err(TimelineError::Empty);
    }
    let mut words = Vec::new();
    let mut said = spoken.into_iter();
    for piece in pieces {
        let offset_ms = (out.samples.len() as u64 * 1000 / u64::from(rate)) as u32;
        match piece {
            Piece::Break(ms) => {
                out.phonemes.push(PhonemeAt {
                    name: "_".into(),
                    start_ms: offset_ms,
                });
                let n = u64::from(*ms) * u64::from(rate) / 1000;
                out.samples.resize(out.samples.len() + n as usize, 0);
            }
            Piece::Text(t) if align::spoken(t).is_empty() => {}
            Piece::Text(_) => {
                let Some((s, speech)) = said.next() else {
                    break;
                };
                words.extend(align::align(&s, &speech).into_iter().map(|w| WordAt {
                    start_ms: w.start_ms + offset_ms,
                    end_ms: w.end_ms + offset_ms,
                    ..w
                }));
                out.phonemes
                    .extend(speech.phonemes.into_iter().map(|p| PhonemeAt {
                        start_ms: p.start_ms + offset_ms,
                        ..p
                    }));
                out.marks
                    .extend(speech.marks.into_iter().map(|m| super::voice::WordMark {
                        start_ms: m.start_ms + offset_ms,
                        ..m
                    }));
                out.samples.extend_from_slice(&speech.samples);
            }
        }
    }
    Ok((out, words))
}

/// A nod on each long word (more than five letters): up over 0.6 s from its start.
pub fn nod(words: &[WordAt], t: f64) -> f64 {
    words
        .iter()
        .filter(|w| w.text.chars().count() > 5)
        .map(|w| {
            let dt = t - f64::from(w.start_ms) / 1000.0;
            if (0.0..0.6).contains(&dt) {
                (dt / 0.6 * std::f64::consts::PI).sin()
            } else {
                0.0
            }
        })
        .fold(0.0, f64::max)
}

/// The face's life apart from the mouth: blinks and glances scheduled from the seed, head
/// sway, breathing and the expression. A video's is laid out for its length at once; a live
/// session's is [`extend`](Self::extend)ed as it runs and [`forget`](Self::forget)s what has
/// passed.
#[derive(Debug, Clone)]
pub struct Motion {
    blinks: Vec<f64>,
    saccades: Vec<f64>,
    gaze: Vec<(f64, f64)>,
    phase: Vec<f64>,
    smile: f64,
    brow: f64,
    /// Where the schedules end.
    until: f64,
}

const BLINK_GAPS: (f64, f64) = (1.8, 5.2);
const SACCADE_GAPS: (f64, f64) = (0.9, 3.2);

fn glance(rng: &mut Rng) -> (f64, f64) {
    (rng.range(-0.35, 0.35), rng.range(-0.2, 0.15))
}

impl Motion {
    /// The schedules for `duration` seconds (drawn from `rng` in a fixed order: blinks,
    /// glances, their targets, the sway phases).
    pub fn new(rng: &mut Rng, duration: f64, expression: &str) -> Self {
        // Each expression reads at a glance: friendly smiles with raised brows and smiling
        // eyes, serious frowns with lowered, drawn brows and lower lids; neutral rests between.
        let (smile, brow) = match expression {
            "friendly" => (0.85, 0.45),
            "serious" => (-0.5, -0.6),
            _ => (0.1, 0.0),
        };
        let blinks = schedule(rng, duration, BLINK_GAPS.0, BLINK_GAPS.1);
        let saccades = schedule(rng, duration, SACCADE_GAPS.0, SACCADE_GAPS.1);
        let gaze = saccades.iter().map(|_| glance(rng)).collect();
        let phase = (0..6)
            .map(|_| rng.range(0.0, std::f64::consts::TAU))
            .collect();
        Self {
            blinks,
            saccades,
            gaze,
            phase,
            smile,
            brow,
            until: duration,
        }
    }

    /// Schedules blinks and glances on to `until` seconds.
    pub fn extend(&mut self, rng: &mut Rng, until: f64) {
        let next = |times: &Vec<f64>, rng: &mut Rng, (lo, hi): (f64, f64)| {
            times.last().copied().unwrap_or(0.0) + rng.range(lo, hi)
        };
        loop {
            let t = next(&self.blinks, rng, BLINK_GAPS);
            if t >= until {
                break;
            }
            self.blinks.push(t);
        }
        loop {
            let t = next(&self.saccades, rng, SACCADE_GAPS);
            if t >= until {
                break;
            }
            self.saccades.push(t);
            self.gaze.push(glance(rng));
        }
        self.until = self.until.max(until);
    }

    /// Where the schedules end.
    pub fn until(&self) -> f64 {
        self.until
    }

    /// Drops blinks and glances over before `t` (the last glance and the one before it stay:
    /// the gaze moves from one target to the next).
    pub fn forget(&mut self, t: f64) {
        let done = self.blinks.iter().take_while(|b| **b + 1.0 < t).count();
        self.blinks.drain(..done);
        let past = self.saccades.iter().take_while(|s| **s < t).count();
        let drop = past.saturating_sub(2);
        self.saccades.drain(..drop);
        self.gaze.drain(..drop);
    }

    /// The frame at `t` seconds with mouth shape `m` (open, wide, round, teeth, tongue), the
    /// spoken word's index `word` (−1: none) and a nod of `nod` (0–1).
    pub fn frame(&self, t: f64, m: [f64; 5], word: f32, nod: f64) -> FrameParams {
        // Speaking energy from the mouth shape itself (not from the audio samples, which
        // espeak does not reproduce bit for bit).
        let loud = (m[0] * 1.6).min(1.0);
        let blink = self
            .blinks
            .iter()
            .map(|b| blink_curve(t - b))
            .fold(0.0, f64::max);
        let (gx, gy) = gaze_at(&self.saccades, &self.gaze, t);
        let phase = &self.phase;
        let s = |k: usize, f: f64| (std::f64::consts::TAU * f * t + phase[k]).sin();
        FrameParams {
            mouth_open: m[0] as f32,
            mouth_wide: m[1] as f32,
            mouth_round: m[2] as f32,
            teeth: m[3] as f32,
            tongue: m[4] as f32,
            blink: blink as f32,
            gaze_x: gx as f32,
            gaze_y: gy as f32,
            yaw: (0.045 * s(0, 0.11) + 0.02 * s(1, 0.29) + 0.01 * loud * s(5, 1.3)) as f32,
            pitch: (0.025 * s(2, 0.17) + 0.03 * nod) as f32,
            roll: (0.018 * s(3, 0.13)) as f32,
            breath: (0.5 + 0.5 * (std::f64::consts::TAU * t / 4.2 + phase[4]).sin()) as f32,
            smile: (self.smile + 0.1 * loud * 0.5) as f32,
            brow: (self.brow + 0.35 * nod) as f32,
            time: t as f32,
            word,
        }
    }
}

/// Text as a voice says it, with its words timed: the script markup (`<break/>`) honoured,
/// as a video's script is spoken. What a live session's `speak` turns into sound.
pub fn say(
    text: &str,
    voice: &crate::render::params::VoiceParams,
    tts: &dyn TtsBackend,
) -> Result<(Speech, Vec<WordAt>), TimelineError> {
    speak(&text::parse(text)?, voice, tts)
}

/// Event times spaced by uniform gaps in [min_gap, max_gap).
fn schedule(rng: &mut Rng, duration: f64, min_gap: f64, max_gap: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut t = rng.range(0.3, max_gap);
    while t < duration {
        out.push(t);
        t += rng.range(min_gap, max_gap);
    }
    out
}

fn blink_curve(dt: f64) -> f64 {
    const CLOSE: f64 = 0.07;
    const OPEN: f64 = 0.12;
    if !(0.0..=CLOSE + OPEN).contains(&dt) {
        0.0
    } else if dt < CLOSE {
        (dt / CLOSE).powf(0.7)
    } else {
        1.0 - ((dt - CLOSE) / OPEN).powf(1.3)
    }
}

fn gaze_at(times: &[f64], targets: &[(f64, f64)], t: f64) -> (f64, f64) {
    let idx = times.iter().rposition(|s| *s <= t);
    let Some(i) = idx else { return (0.0, 0.0) };
    let prev = if i == 0 { (0.0, 0.0) } else { targets[i - 1] };
    let k = ((t - times[i]) / 0.06).clamp(0.0, 1.0);
    let k = k * k * (3.0 - 2.0 * k);
    (
        prev.0 + (targets[i].0 - prev.0) * k,
        prev.1 + (targets[i].1 - prev.1) * k,
    )
}

/// One run of phonemes that share a viseme, from its first phoneme's start to the next
/// run's start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VisemeSegment {
    pub viseme: Viseme,
    pub start_ms: f64,
    pub end_ms: f64,
    /// How long before `end_ms` the mouth starts moving towards the next run.
    anticipation_ms: f64,
}

/// The mouth over time. Each viseme reaches full weight exactly at its first phoneme's
/// start (espeak's audio position) and holds it; towards the end of its run it cross-fades
/// (smoothstep) into the next viseme, starting [`ANTICIPATION_MS`] (or 60 % of the run,
/// if shorter) ahead. At most two visemes are ever blended and their weights sum to one,
/// so silences (`Sil`) close the mouth completely.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VisemeTrack {
    segments: Vec<VisemeSegment>,
}

impl VisemeTrack {
    /// The track of `phonemes` (start times in ms) over an utterance of `end_ms`.
    pub fn new(phonemes: &[super::voice::PhonemeAt], end_ms: f64) -> Self {
        let mut segments: Vec<VisemeSegment> = Vec::new();
        let mut push = |viseme: Viseme, start_ms: f64| match segments.last_mut() {
            Some(last) if last.viseme == viseme => {}
            Some(last) if start_ms <= last.start_ms => last.viseme = viseme,
            _ => segments.push(VisemeSegment {
                viseme,
                start_ms,
                end_ms,
                anticipation_ms: 0.0,
            }),
        };
        push(Viseme::Sil, 0.0);
        for p in phonemes {
            push(viseme_of(&p.name), f64::from(p.start_ms).min(end_ms));
        }
        push(Viseme::Sil, end_ms);
        // Merging a zero-length run may leave neighbours with equal visemes: merge again.
        segments.dedup_by(|next, prev| next.viseme == prev.viseme);
        let count = segments.len();
        for i in 0..count {
            let end = segments.get(i + 1).map_or(end_ms, |n| n.start_ms);
            let s = &mut segments[i];
            s.end_ms = end.max(s.start_ms);
            s.anticipation_ms = if i + 1 < count {
                ANTICIPATION_MS.min(ANTICIPATION_SHARE * (s.end_ms - s.start_ms))
            } else {
                0.0
            };
        }
        if end_ms <= 0.0 || phonemes.is_empty() {
            segments.clear();
        }
        Self { segments }
    }

    pub fn segments(&self) -> &[VisemeSegment] {
        &self.segments
    }

    /// The visemes showing at `t_ms` with their weights (summing to one).
    pub fn weights_at(&self, t_ms: f64) -> [(Viseme, f64); 2] {
        let idx = self
            .segments
            .partition_point(|s| s.start_ms <= t_ms)
            .saturating_sub(1);
        let Some(seg) = self.segments.get(idx) else {
            return [(Viseme::Sil, 1.0), (Viseme::Sil, 0.0)];
        };
        let next = self.segments.get(idx + 1);
        let fade_from = seg.end_ms - seg.anticipation_ms;
        match next {
            Some(n) if t_ms > fade_from && seg.anticipation_ms > 0.0 => {
                let k = ((t_ms - fade_from) / seg.anticipation_ms).clamp(0.0, 1.0);
                let k = k * k * (3.0 - 2.0 * k);
                [(seg.viseme, 1.0 - k), (n.viseme, k)]
            }
            _ => [(seg.viseme, 1.0), (seg.viseme, 0.0)],
        }
    }

    /// The weight of viseme `v` at `t_ms`.
    pub fn weight(&self, v: Viseme, t_ms: f64) -> f64 {
        self.weights_at(t_ms)
            .iter()
            .filter(|(x, _)| *x == v)
            .map(|(_, w)| w)
            .sum()
    }

    /// (open, wide, round, teeth, tongue) at `t_ms`.
    pub fn shape_at(&self, t_ms: f64) -> [f64; 5] {
        let mut acc = [0.0; 5];
        for (v, w) in self.weights_at(t_ms) {
            for (a, s) in acc.iter_mut().zip(shape(v)) {
                *a += w * s;
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phonemes_map_to_visemes() {
        assert_eq!(viseme_of("m"), Viseme::PP);
        assert_eq!(viseme_of("'aI"), Viseme::AA);
        assert_eq!(viseme_of("oU"), Viseme::OH);
        assert_eq!(viseme_of("u:"), Viseme::OU);
        assert_eq!(viseme_of("_:"), Viseme::Sil);
        assert_eq!(viseme_of(""), Viseme::Sil);
        assert_eq!(viseme_of("s"), Viseme::SS);
        assert_eq!(viseme_of("t2"), Viseme::DD);
        assert_eq!(viseme_of("i:"), Viseme::IH);
        assert_eq!(viseme_of("3:"), Viseme::E);
        assert_eq!(viseme_of("0"), Viseme::OH);
    }

    fn ph(name: &str, start_ms: u32) -> super::super::voice::PhonemeAt {
        super::super::voice::PhonemeAt {
            name: name.into(),
            start_ms,
        }
    }

    #[test]
    fn visemes_peak_at_their_phoneme_and_silence_closes_the_mouth() {
        // "ma", a pause, "pa": m/p share a viseme but a pause separates them.
        let track = VisemeTrack::new(
            &[
                ph("m", 20),
                ph("a", 100),
                ph("_:", 300),
                ph("p", 700),
                ph("a", 760),
            ],
            1000.0,
        );
        let kinds: Vec<Viseme> = track.segments().iter().map(|s| s.viseme).collect();
        use Viseme::*;
        assert_eq!(kinds, [Sil, PP, AA, Sil, PP, AA, Sil]);
        for s in track.segments() {
            assert!(
                (track.weight(s.viseme, s.start_ms) - 1.0).abs() < 1e-12,
                "{s:?}"
            );
            assert!(track.weight(s.viseme, s.start_ms - 1.0) < 1.0 || s.start_ms == 0.0);
        }
        // The pause: closed from its start until the anticipation of "p" (60 ms ahead).
        for t in [300.0, 400.0, 639.0] {
            assert_eq!(track.shape_at(t)[0], 0.0, "open at {t} ms");
        }
        assert!(track.shape_at(150.0)[0] > 0.7, "open on the vowel");
        // Weights always sum to one.
        for t in 0..1000 {
            let w: f64 = track.weights_at(f64::from(t)).iter().map(|(_, w)| w).sum();
            assert!((w - 1.0).abs() < 1e-12);
        }
        assert!(VisemeTrack::new(&[], 1000.0).segments().is_empty());
    }

    #[test]
    fn the_rng_is_stable() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
        let mut r = Rng::new(7);
        assert!(
            (0..1000)
                .map(|_| r.range(-1.0, 2.0))
                .all(|x| (-1.0..2.0).contains(&x))
        );
    }
}
