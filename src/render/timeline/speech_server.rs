//! Voices from a speech server (SPEC §3b, `TTS_URL`): any server answering the common
//! `POST {TTS_URL}/v1/audio/speech` (`{"model", "input", "voice", "response_format"}` →
//! audio; OpenAI's API and the self-hosted servers that copy it). The answer is decoded like a
//! recording ([`crate::render::media::decode`]) and the mouth follows its sound
//! ([`super::listen`]); such a voice reports no word marks, so the script's words are spread
//! over the detected speech ([`super::align`]: by letters, each boundary moved to the
//! nearest onset of sound).
//!
//! Each request has a 30 s time-out and is retried with exponential back-off (backon) on
//! connection failures, time-outs, 429 and 5xx — three retries, then the voice is
//! [`VoiceError::Unavailable`] (the video fails as `tts_unavailable`). The key is sent as
//! `Authorization: Bearer` and never printed: [`Secret`] hides it from `Debug`, and errors
//! name only the server's status or the kind of failure.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::render::media::decode;

use super::voice::{Speech, VoiceError};

/// Per request: connecting and the whole answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RETRIES: usize = 3;

/// A credential that never shows in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The speech server of `TTS_URL`, `TTS_API_KEY`, `TTS_MODEL` and `TTS_VOICES`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechServer {
    /// Base URL; requests go to `{base}/v1/audio/speech`.
    pub base: url::Url,
    pub api_key: Option<Secret>,
    pub model: String,
    /// The server's voice names, listed as voices `http-{name}`.
    pub voices: Vec<String>,
}

/// Why one request did not give audio, and whether trying again may help.
#[derive(Debug)]
struct Failure {
    retry: bool,
    why: String,
}

impl SpeechServer {
    fn endpoint(&self) -> String {
        format!(
            "{}/v1/audio/speech",
            self.base.as_str().trim_end_matches('/')
        )
    }

    /// `text` spoken by the server's voice `voice` at `speed` (0.5–2.0, sent as the request's
    /// `speed`), decoded to mono PCM.
    pub fn speak(&self, text: &str, voice: &str, speed: f64) -> Result<Speech, VoiceError> {
        let mut body = serde_json::json!({
            "model": self.model,
            "input": text,
            "voice": voice,
            "response_format": "wav",
        });
        // Sent only when asked for: not every server knows the field.
        if (speed - 1.0).abs() > 1e-9 {
            body["speed"] = serde_json::json!(speed);
        }
        let audio = block_on(self.fetch(&body))?;
        let file = std::env::temp_dir().join(format!("reelgen-tts-{}", uuid::Uuid::new_v4()));
        std::fs::write(&file, &audio)
            .map_err(|e| VoiceError::Unavailable(format!("cannot keep the answer: {e}")))?;
        let decoded = decode::decode_audio(&file, decode::RECORDING_LIMITS);
        let _ = std::fs::remove_file(&file);
        let pcm = decoded.map_err(|e| {
            VoiceError::Unavailable(format!("the speech server's answer is not audio ({e})"))
        })?;
        Ok(Speech {
            sample_rate: pcm.sample_rate,
            phonemes: super::listen::phonemes(&pcm.samples, pcm.sample_rate),
            samples: pcm.samples,
            marks: Vec::new(),
        })
    }

    async fn fetch(&self, body: &serde_json::Value) -> Result<Vec<u8>, VoiceError> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| VoiceError::Unavailable(format!("no HTTP client: {e}")))?;
        let once = || async {
            let mut req = client.post(self.endpoint()).json(body);
            if let Some(key) = &self.api_key {
                req = req.bearer_auth(key.expose());
            }
            let res = req.send().await.map_err(|e| Failure {
                retry: true,
                why: if e.is_timeout() {
                    "timed out".to_string()
                } else if e.is_connect() {
                    "cannot connect".to_string()
                } else {
                    "the request failed".to_string()
                },
            })?;
            let status = res.status();
            if !status.is_success() {
                return Err(Failure {
                    retry: status.is_server_error() || status.as_u16() == 429,
                    why: format!("answered {status}"),
                });
            }
            let bytes = res.bytes().await.map_err(|_| Failure {
                retry: true,
                why: "the answer broke off".to_string(),
            })?;
            if bytes.is_empty() {
                return Err(Failure {
                    retry: true,
                    why: "answered with no audio".to_string(),
                });
            }
            Ok(bytes.to_vec())
        };
        once.retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_factor(2.0)
                .with_max_times(RETRIES),
        )
        .when(|f: &Failure| f.retry)
        .notify(|f: &Failure, wait: Duration| {
            tracing::warn!(why = %f.why, retry_in_ms = wait.as_millis(), "speech server failed; retrying");
        })
        .await
        .map_err(|f| VoiceError::Unavailable(format!("the speech server {}", f.why)))
    }
}

/// Runs `fut` to completion from synchronous code (a render thread), on a runtime of its own —
/// on a thread of its own when the caller is already inside a runtime.
fn block_on<T: Send>(fut: impl std::future::Future<Output = T> + Send) -> T {
    let run = move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(fut))
    };
    let result = if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| s.spawn(run).join().ok())
    } else {
        Some(run())
    };
    match result {
        Some(Ok(v)) => v,
        // Building a current-thread runtime only fails when the OS refuses resources.
        _ => panic!("no async runtime for the speech server request"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let server = SpeechServer {
            base: url::Url::parse("http://127.0.0.1:9/").expect("url"),
            api_key: Some(Secret::new("sk-very-secret".into())),
            model: "tts-1".into(),
            voices: vec!["alloy".into()],
        };
        let shown = format!("{server:?}");
        assert!(
            !shown.contains("sk-very-secret") && shown.contains("***"),
            "{shown}"
        );
        assert_eq!(server.endpoint(), "http://127.0.0.1:9/v1/audio/speech");
    }

    #[test]
    fn a_server_that_cannot_be_reached_is_unavailable_after_its_retries() {
        let server = SpeechServer {
            base: url::Url::parse("http://127.0.0.1:9").expect("url"),
            api_key: Some(Secret::new("sk-very-secret".into())),
            model: "tts-1".into(),
            voices: vec!["alloy".into()],
        };
        match server.speak("Hello.", "alloy", 1.0) {
            Err(VoiceError::Unavailable(why)) => {
                assert!(why.contains("cannot connect"), "{why}");
                assert!(!why.contains("sk-very-secret"));
            }
            other => panic!("{other:?}"),
        }
    }
}
