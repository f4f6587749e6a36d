//! A video's timeline before any pixel: the script's words, espeak-ng's speech and phonemes,
//! the voice back-ends, and the caption lines, all timed to the frame.

pub mod captions;
pub mod espeak;
pub mod script;
pub mod voice;
