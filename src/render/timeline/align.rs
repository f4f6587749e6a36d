//! The script's own words timed against the speech: what captions, transcripts and the
//! caption highlight show. The voice is given the text as it should be read ([`spoken`]:
//! abbreviations spelt out, symbols named), and each word of the script knows which characters
//! of that text it became. The voice reports word marks by character position, but not one per
//! word: espeak-ng merges short unstressed words into the next or previous one ("I am",
//! "for the", "à la" get one mark) and marks a number once per digit group. So marks only
//! anchor the words they fall in ([`align`]); a run of words without a mark shares its
//! anchor's span — from that mark to the next, pauses trimmed — by letter count, each
//! boundary moved to the nearest phoneme start. Every word of the script comes out once, in
//! order, with its punctuation; a word ends where the next begins or where a pause starts.

use std::ops::Range;

use super::text::is_word;
use super::voice::{PhonemeAt, Speech};

/// One word of the script as shown (punctuation attached) and when it is spoken.
#[derive(Debug, Clone, PartialEq)]
pub struct WordAt {
    pub text: String,
    pub start_ms: u32,
    pub end_ms: u32,
}

/// A piece of the script as the voice reads it, and where each of its words went.
#[derive(Debug, Clone, Default)]
pub struct Spoken {
    /// What the voice is given.
    pub text: String,
    /// Each word as written, with the characters of `text` it became.
    words: Vec<(String, Range<usize>)>,
}

impl Spoken {
    /// The words as written.
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.words.iter().map(|(w, _)| w.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

/// Text as the voice should read it: abbreviations spelt out, symbols named, whitespace and
/// quotes normalised, each token of `text` mapped to the characters it became.
pub fn spoken(text: &str) -> Spoken {
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = 0usize;
    let mut words = Vec::new();
    for token in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
            chars += 1;
        }
        let said = read_as(token);
        let start = chars;
        chars += said.chars().count();
        out.push_str(&said);
        if is_word(token) {
            words.push((token.to_string(), start..chars));
        }
    }
    Spoken { text: out, words }
}

/// The text [`spoken`] gives the voice.
pub fn normalise(text: &str) -> String {
    spoken(text).text
}

/// How one whitespace-free token is read.
fn read_as(word: &str) -> String {
    let replaced = match word {
        "Dr." => "Doctor",
        "Mr." => "Mister",
        "Mrs." => "Missus",
        "Ms." => "Miz",
        "St." => "Street",
        "vs." | "vs" => "versus",
        "e.g." => "for example",
        "i.e." => "that is",
        "etc." => "et cetera",
        "&" => "and",
        w => w,
    };
    let mut out = String::with_capacity(replaced.len());
    let mut chars = replaced.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '‘' | '’' => out.push('\''),
            '“' | '”' => out.push('"'),
            '—' | '–' => out.push_str(", "),
            // "50%" is "50 percent"; "%off" must not become one word "percentoff".
            '%' if chars.peek().is_some() => out.push_str(" percent "),
            '%' => out.push_str(" percent"),
            '&' => out.push_str(" and "),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The words of `spoken`, timed against `speech` (the voice's reading of `spoken.text`).
pub fn align(spoken: &Spoken, speech: &Speech) -> Vec<WordAt> {
    let n = spoken.words.len();
    if n == 0 {
        return Vec::new();
    }
    let phonemes = &speech.phonemes;
    let sounds: Vec<f64> = phonemes
        .iter()
        .filter(|p| !p.is_pause())
        .map(|p| f64::from(p.start_ms))
        .collect();
    let duration = f64::from(speech.duration_ms());
    let speech_start = sounds.first().copied().unwrap_or(0.0);
    let speech_end = pause_after(phonemes, speech_start, duration);

    // Anchors: the first mark inside each word, kept only while marks move forwards.
    let mut anchor: Vec<Option<f64>> = vec![None; n];
    let (mut last_word, mut last_ms) = (0usize, f64::NEG_INFINITY);
    for mark in &speech.marks {
        let pos = mark.char_pos as usize;
        let at = f64::from(mark.start_ms);
        let Some(j) = spoken.words.iter().position(|(_, r)| r.end > pos) else {
            continue;
        };
        if j >= last_word && anchor[j].is_none() && at >= last_ms && at < duration.max(1.0) {
            anchor[j] = Some(at);
            (last_word, last_ms) = (j, at);
        }
    }

    // Groups: each anchored word with the unanchored words after it (a leading run of
    // unanchored words starts where the speech starts).
    let mut starts = vec![0.0f64; n];
    let mut i = 0;
    while i < n {
        let g_start = anchor[i].unwrap_or(if i == 0 { speech_start } else { starts[i] });
        let mut j = i + 1;
        while j < n && anchor[j].is_none() {
            j += 1;
        }
        let next = if j < n {
            anchor[j].unwrap_or(duration)
        } else {
            speech_end.max(g_start)
        };
        let g_end = pause_after(phonemes, g_start, next).max(g_start);
        let letters: Vec<f64> = (i..j)
            .map(|k| letters_of(&spoken.text, &spoken.words[k].1))
            .collect();
        let total: f64 = letters.iter().sum();
        let mut acc = 0.0;
        let mut prev = g_start;
        for (k, word) in (i..j).enumerate() {
            if k == 0 {
                starts[word] = g_start;
                acc += letters[0];
                continue;
            }
            let guess = g_start + (g_end - g_start) * acc / total;
            acc += letters[k];
            // The nearest phoneme start after the previous word's start, before the span's end.
            let snapped = sounds
                .iter()
                .copied()
                .filter(|&t| t > prev && t < g_end)
                .min_by(|a, b| (a - guess).abs().total_cmp(&(b - guess).abs()))
                .unwrap_or(guess.max(prev));
            starts[word] = snapped;
            prev = snapped;
        }
        i = j;
    }
    // A leading run placed from the first sound may reach past an early first mark.
    for k in 1..n {
        starts[k] = starts[k].max(starts[k - 1]);
    }

    (0..n)
        .map(|k| {
            let start = starts[k];
            let next = if k + 1 < n { starts[k + 1] } else { speech_end };
            let end = pause_after(phonemes, start, next.max(start));
            let (s, e) = (start.round() as u32, end.round() as u32);
            WordAt {
                text: spoken.words[k].0.clone(),
                start_ms: s,
                end_ms: e.max(s + 1),
            }
        })
        .collect()
}

/// Where the sound that goes on after `from` stops before `until`: the start of the pause
/// that follows the last non-pause phoneme starting in `[from, until)`, or `until`.
fn pause_after(phonemes: &[PhonemeAt], from: f64, until: f64) -> f64 {
    let in_span = |p: &&PhonemeAt| {
        let t = f64::from(p.start_ms);
        t >= from && t < until
    };
    let last_sound = phonemes
        .iter()
        .rev()
        .filter(in_span)
        .find(|p| !p.is_pause())
        .map(|p| f64::from(p.start_ms));
    let Some(last_sound) = last_sound else {
        return until;
    };
    phonemes
        .iter()
        .filter(in_span)
        .filter(|p| p.is_pause() && f64::from(p.start_ms) > last_sound)
        .map(|p| f64::from(p.start_ms))
        .next()
        .unwrap_or(until)
}

/// Letters and digits of a word as read (at least one), its share of a merged span.
fn letters_of(text: &str, range: &Range<usize>) -> f64 {
    let count = text
        .chars()
        .skip(range.start)
        .take(range.len())
        .filter(|c| c.is_alphanumeric())
        .count();
    count.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::super::voice::WordMark;
    use super::*;

    fn ph(name: &str, start_ms: u32) -> PhonemeAt {
        PhonemeAt {
            name: name.into(),
            start_ms,
        }
    }

    /// espeak-ng 1.51's reading of "Hi! I am trying reelgen for the first time." (en-us+f3):
    /// "I am" and "for the" have one mark each.
    fn hi_speech() -> Speech {
        let phonemes = [
            ("h", 11),
            ("aI", 73),
            ("_:", 353),
            ("_", 692),
            ("aI", 692),
            ("a#", 767),
            ("m", 826),
            ("t", 942),
            ("r", 1012),
            ("aI", 1070),
            ("I", 1166),
            ("N", 1233),
            ("r", 1300),
            ("i:", 1361),
            ("l", 1515),
            ("dZ", 1531),
            ("@", 1555),
            ("n", 1604),
            ("f", 1680),
            ("3", 1755),
            ("D", 1828),
            ("@2", 1874),
            ("f", 1936),
            ("3:", 2012),
            ("s", 2137),
            ("t", 2222),
            ("t2", 2316),
            ("aI", 2356),
            ("m", 2588),
            ("_:", 2703),
            ("_", 3004),
        ];
        let marks = [
            (0, 0),
            (4, 692),
            (9, 893),
            (16, 1300),
            (24, 1668),
            (32, 1924),
            (38, 2267),
        ];
        Speech {
            sample_rate: 1000,
            samples: vec![0; 3300],
            phonemes: phonemes.iter().map(|(n, t)| ph(n, *t)).collect(),
            marks: marks
                .iter()
                .map(|(c, t)| WordMark {
                    char_pos: *c,
                    start_ms: *t,
                })
                .collect(),
        }
    }

    #[test]
    fn merged_words_each_get_their_own_start_at_a_phoneme() {
        let s = spoken("Hi! I am trying reelgen for the first time.");
        let words = align(&s, &hi_speech());
        let texts: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Hi!", "I", "am", "trying", "reelgen", "for", "the", "first", "time."
            ]
        );
        let at = |t: &str| words.iter().find(|w| w.text == t).expect("test value");
        // "am" starts at its vowel (a#), "the" at its consonant (D).
        assert_eq!(at("am").start_ms, 767);
        assert_eq!(at("the").start_ms, 1828);
        assert_eq!(at("I").start_ms, 692);
        // "Hi!" ends where the pause after it starts; the last word where the speech ends.
        assert_eq!(at("Hi!").end_ms, 353);
        assert_eq!(at("time.").end_ms, 2703);
        for pair in words.windows(2) {
            assert!(pair[0].start_ms < pair[1].start_ms, "{pair:?}");
            assert!(pair[0].end_ms <= pair[1].start_ms, "{pair:?}");
            assert!(pair[0].start_ms < pair[0].end_ms, "{pair:?}");
        }
    }

    #[test]
    fn words_without_any_mark_are_spread_over_the_speech() {
        let mut speech = hi_speech();
        speech.marks.clear();
        let s = spoken("Hi! I am trying reelgen for the first time.");
        let words = align(&s, &speech);
        assert_eq!(words.len(), 9);
        assert_eq!(words[0].start_ms, 11, "from the first sound");
        assert!(words.windows(2).all(|p| p[0].start_ms < p[1].start_ms));
        assert!(words.last().expect("test value").end_ms <= 2703);
    }

    #[test]
    fn abbreviations_are_read_out_and_lone_punctuation_is_no_word() {
        let s = spoken("Dr.  Smith & co —  50%\tgrowth");
        assert_eq!(s.text, "Doctor Smith and co ,  50 percent growth");
        assert_eq!(
            s.words().collect::<Vec<_>>(),
            ["Dr.", "Smith", "&", "co", "50%", "growth"]
        );
        // Each word knows what it became.
        let became: Vec<String> = s
            .words
            .iter()
            .map(|(_, r)| s.text.chars().skip(r.start).take(r.len()).collect())
            .collect();
        assert_eq!(
            became,
            ["Doctor", "Smith", "and", "co", "50 percent", "growth"]
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// What the voice reads never panics on any text, carries no control characters,
            /// and keeps every plain word of the script in order.
            #[test]
            fn normalising_any_text_is_safe_and_keeps_plain_words(s in "\\PC{0,300}|[\\x00-\\x1f <>/=\"a-z&%—’]{0,200}") {
                let once = normalise(&s);
                prop_assert!(!once.chars().any(char::is_control));
                let plain = |t: &str| -> Vec<String> {
                    t.split(|c: char| !c.is_ascii_alphabetic())
                        .filter(|w| w.len() > 3)
                        .map(str::to_string)
                        .collect()
                };
                let said = plain(&once);
                let mut at = said.iter();
                for w in plain(&s) {
                    prop_assert!(at.any(|x| *x == w), "{w:?} lost from {s:?} -> {once:?}");
                }
            }

            /// Whatever marks a voice reports (out of order, repeated, outside the text),
            /// every word comes out once, in order, with increasing starts and ends after starts.
            #[test]
            fn any_marks_give_every_word_once_in_order(
                text in "[a-z]{1,6}( [a-z,.!]{1,6}){0,12}",
                marks in proptest::collection::vec((0u32..80, 0u32..3000), 0..20),
            ) {
                let mut speech = hi_speech();
                speech.marks = marks.iter().map(|(c, t)| WordMark { char_pos: *c, start_ms: *t }).collect();
                let s = spoken(&text);
                let words = align(&s, &speech);
                let expected: Vec<&str> = text.split_whitespace().filter(|t| is_word(t)).collect();
                let got: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
                prop_assert_eq!(got, expected);
                for w in &words {
                    prop_assert!(w.start_ms < w.end_ms, "{:?}", w);
                }
                for p in words.windows(2) {
                    prop_assert!(p[0].start_ms <= p[1].start_ms, "{:?}", p);
                    prop_assert!(p[0].end_ms <= p[1].start_ms.max(p[0].start_ms + 1), "{:?}", p);
                }
            }
        }
    }
}
