//! A live session's timeline: frame after frame without an end, the avatar idling (blinks,
//! glances, breathing, sway: [`Motion`]) between utterances and speaking each queued
//! [`Utterance`] in turn. [`LiveTimeline::advance`] gives each frame's drive, that frame's sound
//! (silence between utterances) and what happened on it ([`LiveEvent`]: speech started, a
//! word, speech ended); [`LiveTimeline::interrupt`] cuts the utterance on the next frame (the
//! sound stops there, the mouth closes over [`CLOSE_S`]) and drops the queue. Nothing here
//! knows about devices or clocks: the session that owns it calls `advance` once per frame time.

use std::collections::VecDeque;

use super::align::WordAt;
use super::script::{self, FrameParams, Motion, Rng, TimelineError, VisemeTrack, nod};
use super::voice::TtsBackend;
use crate::render::params::VoiceParams;

/// The sound's sample rate (mono S16): Opus's own, so the encoder resamples nothing.
pub const SAMPLE_RATE: u32 = 48_000;
/// How long the mouth takes to close after an interrupt.
pub const CLOSE_S: f64 = 0.12;
/// Blinks and glances are scheduled this far ahead.
const SCHEDULE_AHEAD_S: f64 = 30.0;

/// One thing to say: its sound at [`SAMPLE_RATE`], the mouth's drive and its words.
#[derive(Debug, Clone)]
pub struct Utterance {
    pub id: uuid::Uuid,
    pub text: String,
    pub samples: Vec<i16>,
    pub visemes: VisemeTrack,
    pub words: Vec<WordAt>,
    /// When the request to say it arrived (the speak → first frame latency).
    pub received: std::time::Instant,
}

impl Utterance {
    /// How long it takes to say, in seconds.
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(SAMPLE_RATE)
    }

    /// Its length in frames at `fps` (at least one).
    pub fn frames(&self, fps: u32) -> u64 {
        let n = self.samples.len() as u64 * u64::from(fps);
        n.div_ceil(u64::from(SAMPLE_RATE)).max(1)
    }
}

/// `text` (script markup allowed: `<break/>`) spoken by `voice`, ready to queue.
pub fn utterance(
    text: &str,
    voice: &VoiceParams,
    tts: &dyn TtsBackend,
    received: std::time::Instant,
) -> Result<Utterance, TimelineError> {
    let (speech, words) = script::say(text, voice, tts)?;
    if speech.sample_rate == 0 || speech.samples.is_empty() {
        return Err(TimelineError::Empty);
    }
    let duration_ms = speech.samples.len() as f64 * 1000.0 / f64::from(speech.sample_rate);
    Ok(Utterance {
        id: uuid::Uuid::now_v7(),
        text: text.to_string(),
        samples: crate::render::media::resample(&speech.samples, speech.sample_rate, SAMPLE_RATE),
        visemes: VisemeTrack::new(&speech.phonemes, duration_ms),
        words,
        received,
    })
}

/// What happened on a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    Started {
        id: uuid::Uuid,
        text: String,
        /// From the request to this, its first frame.
        waited: std::time::Duration,
    },
    Word {
        id: uuid::Uuid,
        index: usize,
        text: String,
    },
    Ended {
        id: uuid::Uuid,
        interrupted: bool,
    },
}

/// One frame: the kernel's drive, the frame's sound and its events.
#[derive(Debug, Clone)]
pub struct LiveFrame {
    pub index: u64,
    pub params: FrameParams,
    pub audio: Vec<i16>,
    pub events: Vec<LiveEvent>,
}

struct Playing {
    utterance: Utterance,
    /// Its first frame.
    start: u64,
    /// Words announced so far.
    words_sent: usize,
}

pub struct LiveTimeline {
    fps: u32,
    rng: Rng,
    motion: Motion,
    playing: Option<Playing>,
    queue: VecDeque<Utterance>,
    /// After an interrupt: from which frame, and the mouth shape it closes from.
    closing: Option<(u64, [f64; 5])>,
    /// An interrupt asked for on the next frame.
    cut: bool,
    next: u64,
}

impl LiveTimeline {
    pub fn new(fps: u32, seed: u64, expression: &str) -> Self {
        let mut rng = Rng::new(seed);
        let motion = Motion::new(&mut rng, SCHEDULE_AHEAD_S, expression);
        Self {
            fps: fps.max(1),
            rng,
            motion,
            playing: None,
            queue: VecDeque::new(),
            closing: None,
            cut: false,
            next: 0,
        }
    }

    /// The pose at rest (the first frame's, silent): what a renderer's static layers start from.
    pub fn rest(&self) -> FrameParams {
        self.motion.frame(0.0, [0.0; 5], -1.0, 0.0)
    }

    /// The index of the frame [`advance`](Self::advance) gives.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Whether an utterance is being spoken.
    pub fn speaking(&self) -> bool {
        self.playing.is_some()
    }

    /// Utterances waiting behind the one being spoken.
    pub fn queued(&self) -> impl Iterator<Item = &Utterance> {
        self.queue.iter()
    }

    /// Queues an utterance after those already queued.
    pub fn push(&mut self, u: Utterance) {
        self.queue.push_back(u);
    }

    /// Ends the utterance being spoken on the next frame and drops the queue. Returns the
    /// one cut (if any) and the ids of those dropped.
    pub fn interrupt(&mut self) -> (Option<uuid::Uuid>, Vec<uuid::Uuid>) {
        let dropped = self.queue.drain(..).map(|u| u.id).collect();
        let current = self.playing.as_ref().map(|p| p.utterance.id);
        self.cut = current.is_some();
        (current, dropped)
    }

    fn t(&self, frame: u64) -> f64 {
        frame as f64 / f64::from(self.fps)
    }

    /// The next frame.
    pub fn advance(&mut self) -> LiveFrame {
        let index = self.next;
        self.next += 1;
        let t = self.t(index);
        if t + 1.0 > self.motion.until() {
            self.motion.extend(&mut self.rng, t + SCHEDULE_AHEAD_S);
            self.motion.forget(t);
        }
        let per_frame = (SAMPLE_RATE / self.fps) as usize;
        let mut events = Vec::new();

        if std::mem::take(&mut self.cut)
            && let Some(p) = self.playing.take()
        {
            let at_ms = (t - self.t(p.start)) * 1000.0;
            self.closing = Some((index, p.utterance.visemes.shape_at(at_ms)));
            events.push(LiveEvent::Ended {
                id: p.utterance.id,
                interrupted: true,
            });
        }
        if let Some(p) = &self.playing
            && index >= p.start + p.utterance.frames(self.fps)
        {
            events.push(LiveEvent::Ended {
                id: p.utterance.id,
                interrupted: false,
            });
            self.playing = None;
        }
        if self.playing.is_none()
            && let Some(u) = self.queue.pop_front()
        {
            events.push(LiveEvent::Started {
                id: u.id,
                text: u.text.clone(),
                waited: u.received.elapsed(),
            });
            self.closing = None;
            self.playing = Some(Playing {
                utterance: u,
                start: index,
                words_sent: 0,
            });
        }

        let (mouth, nodding, audio) = match &mut self.playing {
            Some(p) => {
                let local = index - p.start;
                let local_t = local as f64 / f64::from(self.fps);
                let local_ms = local_t * 1000.0;
                let u = &p.utterance;
                while let Some(w) = u.words.get(p.words_sent)
                    && f64::from(w.start_ms) < local_ms + 1000.0 / f64::from(self.fps)
                {
                    events.push(LiveEvent::Word {
                        id: u.id,
                        index: p.words_sent,
                        text: w.text.clone(),
                    });
                    p.words_sent += 1;
                }
                let from = (local as usize * per_frame).min(u.samples.len());
                let to = (from + per_frame).min(u.samples.len());
                let mut audio = u.samples[from..to].to_vec();
                audio.resize(per_frame, 0);
                (u.visemes.shape_at(local_ms), nod(&u.words, local_t), audio)
            }
            None => {
                let mouth = match self.closing {
                    Some((from, shape)) => {
                        let k = ((t - self.t(from)) / CLOSE_S).clamp(0.0, 1.0);
                        let keep = 1.0 - k * k * (3.0 - 2.0 * k);
                        if keep <= 0.0 {
                            self.closing = None;
                        }
                        shape.map(|v| v * keep)
                    }
                    None => [0.0; 5],
                };
                (mouth, 0.0, vec![0; per_frame])
            }
        };
        LiveFrame {
            index,
            params: self.motion.frame(t, mouth, -1.0, nodding),
            audio,
            events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::timeline::voice::PhonemeAt;

    fn utterance(text: &str, ms: u32) -> Utterance {
        let phonemes = vec![
            PhonemeAt {
                name: "a".into(),
                start_ms: 0,
            },
            PhonemeAt {
                name: "_".into(),
                start_ms: ms - 40,
            },
        ];
        Utterance {
            id: uuid::Uuid::new_v4(),
            text: text.into(),
            samples: vec![1000; (SAMPLE_RATE * ms / 1000) as usize],
            visemes: VisemeTrack::new(&phonemes, f64::from(ms)),
            words: vec![
                WordAt {
                    text: "hello".into(),
                    start_ms: 0,
                    end_ms: ms / 2,
                },
                WordAt {
                    text: "there".into(),
                    start_ms: ms / 2,
                    end_ms: ms,
                },
            ],
            received: std::time::Instant::now(),
        }
    }

    #[test]
    fn an_idle_timeline_keeps_blinking_with_a_closed_mouth_and_silence() {
        let mut live = LiveTimeline::new(25, 7, "neutral");
        let frames: Vec<LiveFrame> = (0..25 * 120).map(|_| live.advance()).collect();
        assert!(frames.iter().all(|f| f.params.mouth_open == 0.0));
        assert!(frames.iter().all(|f| f.audio.iter().all(|s| *s == 0)));
        assert!(frames.iter().all(|f| f.audio.len() == 1920));
        // Blinks go on past the first schedule (30 s) to the end.
        let late_blinks = frames[25 * 90..]
            .iter()
            .filter(|f| f.params.blink > 0.9)
            .count();
        assert!(late_blinks > 0, "no blink in the last 30 s");
        assert!(frames.iter().all(|f| f.events.is_empty()));
    }

    #[test]
    fn queued_utterances_are_spoken_in_turn_with_their_words_and_sound() {
        let mut live = LiveTimeline::new(25, 7, "neutral");
        live.advance();
        let (a, b) = (utterance("hello there", 400), utterance("again", 200));
        let (ida, idb) = (a.id, b.id);
        live.push(a);
        live.push(b);
        let frames: Vec<LiveFrame> = (0..30).map(|_| live.advance()).collect();
        let events: Vec<(u64, LiveEvent)> = frames
            .iter()
            .flat_map(|f| f.events.iter().map(|e| (f.index, e.clone())))
            .collect();
        let started: Vec<(u64, uuid::Uuid)> = events
            .iter()
            .filter_map(|(i, e)| match e {
                LiveEvent::Started { id, .. } => Some((*i, *id)),
                _ => None,
            })
            .collect();
        assert_eq!(started, vec![(1, ida), (11, idb)]);
        let words: Vec<&str> = events
            .iter()
            .filter_map(|(_, e)| match e {
                LiveEvent::Word { id, text, .. } if *id == ida => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(words, ["hello", "there"]);
        assert!(events.contains(&(
            11,
            LiveEvent::Ended {
                id: ida,
                interrupted: false
            }
        )));
        assert!(frames[1].audio.iter().all(|s| *s == 1000));
        assert!(frames[1].params.mouth_open > 0.3);
        assert!(frames.last().expect("frames").audio.iter().all(|s| *s == 0));
    }

    #[test]
    fn an_interrupt_cuts_on_the_next_frame_closes_the_mouth_and_drops_the_queue() {
        let mut live = LiveTimeline::new(25, 7, "neutral");
        let (a, b) = (utterance("hello there", 2000), utterance("again", 400));
        let (ida, idb) = (a.id, b.id);
        live.push(a);
        live.push(b);
        for _ in 0..5 {
            live.advance();
        }
        assert_eq!(live.interrupt(), (Some(ida), vec![idb]));
        let cut = live.advance();
        assert_eq!(
            cut.events,
            vec![LiveEvent::Ended {
                id: ida,
                interrupted: true
            }]
        );
        assert!(cut.audio.iter().all(|s| *s == 0), "the sound stops at once");
        assert!(cut.params.mouth_open > 0.0, "the mouth closes smoothly");
        let later: Vec<LiveFrame> = (0..10).map(|_| live.advance()).collect();
        assert_eq!(later.last().expect("frames").params.mouth_open, 0.0);
        assert!(
            later.iter().all(|f| f.events.is_empty()),
            "the queue is gone"
        );
        assert!(!live.speaking());
    }
}
