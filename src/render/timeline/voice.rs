//! Voice: text → PCM audio plus phoneme timings and word marks (where in the text the voice
//! started a word), behind [`TtsBackend`]; the built-in backend, espeak-ng (voices in
//! `assets/voices.json`, field `espeak_voice`), whose timings come from the synthesiser
//! itself, so lips and sound agree by construction. [`super::voices`] picks the backend of
//! each voice. Which
//! word of the script a mark belongs to is [`super::align`]'s business: a voice may merge
//! short words into one mark ("I am", "for the") or mark one number several times.

use crate::render::assets::Catalog;
use crate::render::params::VoiceParams;

use super::espeak;

/// One phoneme with its start in the audio.
#[derive(Debug, Clone, PartialEq)]
pub struct PhonemeAt {
    pub name: String,
    pub start_ms: u32,
}

impl PhonemeAt {
    /// Whether this phoneme is a pause (espeak's `_`, `_:`, `_!` … or an empty name).
    pub fn is_pause(&self) -> bool {
        is_pause(&self.name)
    }
}

/// Whether an espeak phoneme mnemonic names a pause.
pub fn is_pause(name: &str) -> bool {
    let p = name.trim_start_matches(['\'', ',', '%', '=']);
    p.is_empty() || p.starts_with('_') || p.starts_with(';')
}

/// The voice started a word at character `char_pos` (0-based, in the text it was given) at
/// `start_ms` in the audio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WordMark {
    pub char_pos: u32,
    pub start_ms: u32,
}

#[derive(Debug, Clone, Default)]
pub struct Speech {
    pub sample_rate: u32,
    /// Mono signed 16-bit samples.
    pub samples: Vec<i16>,
    pub phonemes: Vec<PhonemeAt>,
    /// In the order the voice reported them.
    pub marks: Vec<WordMark>,
}

impl Speech {
    pub fn duration_ms(&self) -> u32 {
        if self.sample_rate == 0 {
            return 0;
        }
        (self.samples.len() as u64 * 1000 / u64::from(self.sample_rate)) as u32
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    #[error("unknown voice {0:?}")]
    UnknownVoice(String),
    #[error(transparent)]
    Espeak(#[from] espeak::EspeakError),
    /// The speech server keeps failing (or is not configured for this voice).
    #[error("{0}")]
    Unavailable(String),
}

/// A text-to-speech engine.
pub trait TtsBackend: Send + Sync {
    fn speak(&self, text: &str, voice: &VoiceParams) -> Result<Speech, VoiceError>;
}

/// espeak-ng through its C library.
pub struct Espeak {
    pub(super) catalog: std::sync::Arc<Catalog>,
}

impl Espeak {
    pub fn new(catalog: std::sync::Arc<Catalog>) -> Self {
        Self { catalog }
    }
}

impl TtsBackend for Espeak {
    fn speak(&self, text: &str, voice: &VoiceParams) -> Result<Speech, VoiceError> {
        let item = self
            .catalog
            .voice(&voice.id)
            .ok_or_else(|| VoiceError::UnknownVoice(voice.id.clone()))?;
        let name = item
            .extra
            .get("espeak_voice")
            .and_then(|v| v.as_str())
            .unwrap_or("en-us");
        let rate = (175.0 * voice.speed).round() as u32;
        let pitch = (50.0 * voice.pitch).round() as u32;
        let out = espeak::synthesize(text, name, rate, pitch)?;
        let mut speech = Speech {
            sample_rate: out.sample_rate,
            samples: out.samples,
            ..Speech::default()
        };
        for ev in out.events {
            match ev {
                espeak::Event::Phoneme { name, at_ms } => speech.phonemes.push(PhonemeAt {
                    name,
                    start_ms: at_ms,
                }),
                // A zero-length mark is espeak's end-of-clause marker, not a word.
                espeak::Event::Word {
                    text_position,
                    length,
                    at_ms,
                } if length > 0 && text_position > 0 => speech.marks.push(WordMark {
                    char_pos: text_position - 1,
                    start_ms: at_ms,
                }),
                espeak::Event::Word { .. } | espeak::Event::Sentence { .. } => {}
            }
        }
        Ok(speech)
    }
}
