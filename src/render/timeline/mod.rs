//! A video's timeline before any pixel: the script's words and pauses, espeak-ng's speech and
//! phonemes, the voice back-ends, mouth shapes heard in a recording, the words timed against
//! the speech, the caption lines and the transcript files, all timed to the frame; and a live
//! session's endless timeline ([`live`]).

pub mod align;
pub mod captions;
pub mod espeak;
pub mod listen;
pub mod live;
pub mod script;
pub mod speech_server;
pub mod text;
pub mod transcript;
pub mod voice;
pub mod voices;
