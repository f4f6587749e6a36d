//! Every voice of the catalog, each spoken by its backend: espeak-ng ([`super::voice`]) for
//! the built-in voices, the speech server ([`super::speech_server`]) for those listed with
//! `"backend": "http"` (`TTS_VOICES`), whose sound the mouth follows.

use crate::render::assets::Catalog;
use crate::render::params::VoiceParams;

use super::speech_server::SpeechServer;
use super::voice::{Espeak, Speech, TtsBackend, VoiceError};

/// Every voice of the catalog: espeak-ng's, and the speech server's (`"backend": "http"`).
pub struct Voices {
    espeak: Espeak,
    server: Option<SpeechServer>,
}

impl Voices {
    pub fn new(catalog: std::sync::Arc<Catalog>, server: Option<SpeechServer>) -> Self {
        Self {
            espeak: Espeak::new(catalog),
            server,
        }
    }
}

impl TtsBackend for Voices {
    fn speak(&self, text: &str, voice: &VoiceParams) -> Result<Speech, VoiceError> {
        let item = self
            .espeak
            .catalog
            .voice(&voice.id)
            .ok_or_else(|| VoiceError::UnknownVoice(voice.id.clone()))?;
        if item.extra.get("backend").and_then(|b| b.as_str()) != Some("http") {
            return self.espeak.speak(text, voice);
        }
        let server = self.server.as_ref().ok_or_else(|| {
            VoiceError::Unavailable("no speech server is configured (TTS_URL)".into())
        })?;
        let name = item
            .extra
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or(&item.name);
        server.speak(text, name, voice.speed)
    }
}
