//! Voice: text → PCM audio plus phoneme and word timings, behind [`TtsBackend`] so a neural
//! TTS server can be added later. The built-in backend is espeak-ng (voices in
//! `assets/voices.json`, field `espeak_voice`), whose timings come from the synthesiser
//! itself, so lips and sound agree by construction.

use crate::render::assets::Catalog;
use crate::render::params::VoiceParams;

use super::espeak;

/// One phoneme with its start in the audio.
#[derive(Debug, Clone, PartialEq)]
pub struct PhonemeAt {
    pub name: String,
    pub start_ms: u32,
}

/// One word: its byte range in the spoken text and its start in the audio.
#[derive(Debug, Clone, PartialEq)]
pub struct WordAt {
    pub text: String,
    pub start_ms: u32,
}

#[derive(Debug, Clone, Default)]
pub struct Speech {
    pub sample_rate: u32,
    /// Mono signed 16-bit samples.
    pub samples: Vec<i16>,
    pub phonemes: Vec<PhonemeAt>,
    pub words: Vec<WordAt>,
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
}

/// A text-to-speech engine.
pub trait TtsBackend: Send + Sync {
    fn speak(&self, text: &str, voice: &VoiceParams) -> Result<Speech, VoiceError>;
}

/// espeak-ng through its C library.
pub struct Espeak {
    catalog: std::sync::Arc<Catalog>,
}

impl Espeak {
    pub fn new(catalog: std::sync::Arc<Catalog>) -> Self {
        Self { catalog }
    }
}

/// Punctuation that belongs to the word before it when shown as a caption.
fn is_attached_punctuation(c: char) -> bool {
    matches!(
        c,
        '!' | '?' | '.' | ',' | ';' | ':' | '\'' | '"' | ')' | ']' | '…' | '’' | '”' | '»'
    )
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
        let chars: Vec<char> = text.chars().collect();
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
                espeak::Event::Word {
                    text_position,
                    length,
                    at_ms,
                } if length > 0 => {
                    let start = text_position.saturating_sub(1) as usize;
                    let mut end = (start + length as usize).min(chars.len());
                    // espeak's length leaves out punctuation attached to the word ("show!"
                    // is 4 long); captions keep it.
                    while chars.get(end).is_some_and(|&c| is_attached_punctuation(c)) {
                        end += 1;
                    }
                    let word: String = chars
                        .get(start.min(end)..end)
                        .map(|c| c.iter().collect())
                        .unwrap_or_default();
                    speech.words.push(WordAt {
                        text: word,
                        start_ms: at_ms,
                    });
                }
                espeak::Event::Word { .. } | espeak::Event::Sentence { .. } => {}
            }
        }
        Ok(speech)
    }
}
