//! A video's transcript and caption files: the words the avatar's mouth follows, with their
//! start and end in seconds (`transcript.json`, the one stored form), and the WebVTT and SubRip
//! files made from it. Cues break at the end of a sentence, before a pause of
//! [`CUE_GAP_S`] or more, and before a cue would pass [`CUE_MAX_CHARS`] characters or
//! [`CUE_MAX_S`] seconds, so a cue is one readable line; cues never overlap.

use serde::{Deserialize, Serialize};

use super::align::WordAt;

/// The most characters on one cue (a common subtitle guideline).
pub const CUE_MAX_CHARS: usize = 42;
/// The longest a cue stays.
pub const CUE_MAX_S: f64 = 6.0;
/// A silence this long between two words starts a new cue.
pub const CUE_GAP_S: f64 = 0.8;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TranscriptWord {
    pub text: String,
    pub start_s: f64,
    pub end_s: f64,
}

/// `GET /api/v1/videos/{id}/transcript`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Transcript {
    pub words: Vec<TranscriptWord>,
}

/// One caption cue: its words joined by spaces, from the first word's start to the last's end.
#[derive(Debug, Clone, PartialEq)]
pub struct Cue {
    pub start_s: f64,
    pub end_s: f64,
    pub text: String,
}

/// Seconds with millisecond precision, as the words were timed.
fn seconds(ms: u32) -> f64 {
    f64::from(ms) / 1000.0
}

impl Transcript {
    pub fn from_words(words: &[WordAt]) -> Self {
        Self {
            words: words
                .iter()
                .map(|w| TranscriptWord {
                    text: w.text.clone(),
                    start_s: seconds(w.start_ms),
                    end_s: seconds(w.end_ms),
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The words grouped into cues (see the module doc).
    pub fn cues(&self) -> Vec<Cue> {
        let mut cues: Vec<Cue> = Vec::new();
        let mut open: Option<Cue> = None;
        let mut prev: Option<&TranscriptWord> = None;
        for w in &self.words {
            if let Some(cue) = open.take() {
                let gap = prev.map_or(0.0, |p| w.start_s - p.end_s);
                let sentence_end = prev.is_some_and(|p| ends_sentence(&p.text));
                let too_long = cue.text.chars().count() + 1 + w.text.chars().count()
                    > CUE_MAX_CHARS
                    || w.end_s - cue.start_s > CUE_MAX_S;
                if sentence_end || gap >= CUE_GAP_S || too_long {
                    cues.push(cue);
                } else {
                    open = Some(Cue {
                        end_s: w.end_s,
                        text: format!("{} {}", cue.text, w.text),
                        ..cue
                    });
                    prev = Some(w);
                    continue;
                }
            }
            open = Some(Cue {
                start_s: w.start_s,
                end_s: w.end_s,
                text: w.text.clone(),
            });
            prev = Some(w);
        }
        cues.extend(open);
        cues
    }

    /// The WebVTT file (`text/vtt`).
    pub fn vtt(&self) -> String {
        let mut out = String::from("WEBVTT\n");
        for (i, cue) in self.cues().iter().enumerate() {
            out.push_str(&format!(
                "\n{}\n{} --> {}\n{}\n",
                i + 1,
                timestamp(cue.start_s, '.'),
                timestamp(cue.end_s, '.'),
                escape_vtt(&cue.text)
            ));
        }
        out
    }

    /// The SubRip file (`application/x-subrip`).
    pub fn srt(&self) -> String {
        let mut out = String::new();
        for (i, cue) in self.cues().iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&format!(
                "{}\n{} --> {}\n{}\n",
                i + 1,
                timestamp(cue.start_s, ','),
                timestamp(cue.end_s, ','),
                cue.text
            ));
        }
        out
    }
}

fn ends_sentence(word: &str) -> bool {
    word.trim_end_matches(['"', '\'', ')', ']', '’', '”', '»'])
        .ends_with(['.', '!', '?', '…'])
}

/// `hh:mm:ss.mmm` (`,` before the milliseconds in SubRip).
fn timestamp(s: f64, sep: char) -> String {
    let ms = (s.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}{sep}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Cue text as WebVTT requires: `&`, `<` and `>` escaped (so `-->` cannot appear either).
fn escape_vtt(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript(words: &[(&str, u32, u32)]) -> Transcript {
        let w: Vec<WordAt> = words
            .iter()
            .map(|(t, s, e)| WordAt {
                text: t.to_string(),
                start_ms: *s,
                end_ms: *e,
            })
            .collect();
        Transcript::from_words(&w)
    }

    #[test]
    fn cues_break_at_sentences_and_pauses_and_files_are_well_formed() {
        let t = transcript(&[
            ("Hi!", 0, 350),
            ("I", 692, 767),
            ("am", 767, 893),
            ("here", 893, 1200),
            ("—", 1200, 1300),
            ("a<b", 3000, 3400),
            ("&", 3400, 3500),
            ("c.", 3500, 3900),
        ]);
        let cues = t.cues();
        let texts: Vec<&str> = cues.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["Hi!", "I am here —", "a<b & c."]);
        assert_eq!(
            t.vtt(),
            "WEBVTT\n\n1\n00:00:00.000 --> 00:00:00.350\nHi!\n\n\
             2\n00:00:00.692 --> 00:00:01.300\nI am here —\n\n\
             3\n00:00:03.000 --> 00:00:03.900\na&lt;b &amp; c.\n"
        );
        assert_eq!(
            t.srt(),
            "1\n00:00:00,000 --> 00:00:00,350\nHi!\n\n\
             2\n00:00:00,692 --> 00:00:01,300\nI am here —\n\n\
             3\n00:00:03,000 --> 00:00:03,900\na<b & c.\n"
        );
        assert_eq!(timestamp(3725.0125, ','), "01:02:05,013");
    }

    #[test]
    fn long_runs_are_split_and_no_word_is_lost() {
        let words: Vec<(String, u32, u32)> = (0..40)
            .map(|i| (format!("word{i}"), i * 300, i * 300 + 250))
            .collect();
        let refs: Vec<(&str, u32, u32)> =
            words.iter().map(|(t, s, e)| (t.as_str(), *s, *e)).collect();
        let t = transcript(&refs);
        let cues = t.cues();
        assert!(cues.iter().all(|c| c.text.chars().count() <= CUE_MAX_CHARS));
        assert!(cues.iter().all(|c| c.end_s - c.start_s <= CUE_MAX_S));
        let rejoined: Vec<&str> = cues.iter().flat_map(|c| c.text.split(' ')).collect();
        let all: Vec<&str> = refs.iter().map(|w| w.0).collect();
        assert_eq!(rejoined, all);
        for pair in cues.windows(2) {
            assert!(pair[0].end_s <= pair[1].start_s);
        }
        assert!(
            Transcript::default().vtt() == "WEBVTT\n" && Transcript::default().srt().is_empty()
        );
    }
}
