//! The script as written: its words (whitespace-separated tokens, punctuation attached, as
//! captions and transcripts show them) and its SSML pauses. [`parse`] is the one reader of
//! script markup — the request validator refuses what it refuses, the timeline speaks what it
//! returns. The only tag is `<break time="500ms"/>` / `<break time="2s"/>` (or
//! `strength="…"`, or bare `<break/>`: medium, 500 ms), up to [`BREAK_MAX_MS`] each and
//! [`PAUSES_MAX_MS`] in all; any
//! other tag is an error naming it. A `<` that does not open a complete tag (`a < b`, `<3`)
//! is text.

use std::fmt;

/// The longest pause one break may ask for.
pub const BREAK_MAX_MS: u32 = 10_000;
/// The most all of a script's breaks may add up to: 5,000 characters of breaks would
/// otherwise make a 38-minute video of silence (and its audio held in memory).
pub const PAUSES_MAX_MS: u64 = 120_000;

/// A run of text between tags, or a pause.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Text to speak, tags removed (whitespace as written).
    Text(String),
    /// Silence of this many milliseconds.
    Break(u32),
}

/// Why a script's markup is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkupError {
    /// A tag other than `<break/>`: its name as written.
    UnsupportedTag(String),
    /// A `<break>` whose attributes are not a valid pause.
    InvalidBreak(String),
}

impl fmt::Display for MarkupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedTag(name) => write!(
                f,
                "unsupported tag <{name}>; the only tag a script may hold is <break time=\"…\"/>"
            ),
            Self::InvalidBreak(why) => write!(f, "invalid <break/>: {why}"),
        }
    }
}

impl std::error::Error for MarkupError {}

/// The script's pieces in order: adjacent breaks are summed only by the listener (they
/// stay separate pieces); text pieces may be only whitespace or punctuation.
pub fn parse(script: &str) -> Result<Vec<Piece>, MarkupError> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = script;
    while let Some(lt) = rest.find('<') {
        let after = &rest[lt + 1..];
        match tag_at(after) {
            Some((tag, len)) => {
                text.push_str(&rest[..lt]);
                let ms = break_ms(tag)?;
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Break(ms));
                // A tag separates the words on either side.
                text.push(' ');
                rest = &after[len..];
            }
            None => {
                text.push_str(&rest[..=lt]);
                rest = after;
            }
        }
    }
    text.push_str(rest);
    if !text.trim().is_empty() || pieces.is_empty() {
        pieces.push(Piece::Text(text));
    }
    if pauses_ms(&pieces) > PAUSES_MAX_MS {
        return Err(MarkupError::InvalidBreak(format!(
            "the script's breaks add up to more than {} s",
            PAUSES_MAX_MS / 1000
        )));
    }
    Ok(pieces)
}

/// The script's text with its tags removed (each tag a space).
pub fn plain(script: &str) -> String {
    match parse(script) {
        Ok(pieces) => pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Text(t) => Some(t.as_str()),
                Piece::Break(_) => None,
            })
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => script.to_string(),
    }
}

/// The total of the script's pauses in milliseconds.
pub fn pauses_ms(pieces: &[Piece]) -> u64 {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Break(ms) => u64::from(*ms),
            Piece::Text(_) => 0,
        })
        .sum()
}

/// Whether a whitespace-separated token is a word (shown and timed) rather than punctuation
/// standing alone (a dash between words, a lone quote), which is spoken as a pause at most.
pub fn is_word(token: &str) -> bool {
    token.chars().any(|c| !is_punctuation(c))
}

fn is_punctuation(c: char) -> bool {
    (c.is_ascii_punctuation() && !matches!(c, '&' | '%' | '$' | '#' | '@' | '+' | '=' | '<'))
        || matches!(
            c,
            '—' | '–' | '…' | '‘' | '’' | '“' | '”' | '«' | '»' | '¡' | '¿' | '·' | '„'
        )
}

/// The words of the script in order (tags removed, lone punctuation skipped).
pub fn words(script: &str) -> Vec<String> {
    plain(script)
        .split_whitespace()
        .filter(|t| is_word(t))
        .map(str::to_string)
        .collect()
}

/// A complete tag at the start of `s` (just after its `<`): the tag's inside (between `<` and
/// `>`) and the length consumed including the `>`. `None` when `s` does not start a tag: the
/// `<` is then text.
fn tag_at(s: &str) -> Option<(&str, usize)> {
    let first = s.chars().next()?;
    if !(first.is_ascii_alphabetic() || matches!(first, '/' | '!' | '?')) {
        return None;
    }
    let end = s.find(['>', '<'])?;
    if s.as_bytes()[end] != b'>' {
        return None;
    }
    Some((&s[..end], end + 1))
}

/// The pause of a tag's inside (`break time="2s"/`), or why it is refused.
fn break_ms(inside: &str) -> Result<u32, MarkupError> {
    let body = inside.trim_end().trim_end_matches('/');
    // The name runs to the first space or `/` after its first character (`</break>` is
    // the name `/break`).
    let name_end = body
        .char_indices()
        .skip(1)
        .find(|(_, c)| c.is_whitespace() || *c == '/')
        .map_or(body.len(), |(i, _)| i);
    let name = &body[..name_end];
    if name != "break" {
        let shown: String = name
            .trim_start_matches(['/', '!', '?'])
            .chars()
            .take(40)
            .collect();
        let shown = if shown.is_empty() {
            name.chars().take(40).collect()
        } else {
            shown
        };
        return Err(MarkupError::UnsupportedTag(shown));
    }
    if !inside.trim_end().ends_with('/') {
        return Err(MarkupError::InvalidBreak(
            "must be self-closing: <break time=\"…\"/>".into(),
        ));
    }
    let mut ms = None;
    for (key, value) in attributes(&body[name_end..])? {
        let value = match key {
            "time" => time_ms(value)?,
            "strength" => strength_ms(value)?,
            other => {
                return Err(MarkupError::InvalidBreak(format!(
                    "unknown attribute {other:?}; use time=\"500ms\" or time=\"2s\""
                )));
            }
        };
        if ms.replace(value).is_some() {
            return Err(MarkupError::InvalidBreak(
                "give one of time or strength, once".into(),
            ));
        }
    }
    Ok(ms.unwrap_or(500))
}

/// `key="value"` pairs (single or double quotes).
fn attributes(mut s: &str) -> Result<Vec<(&str, &str)>, MarkupError> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return Ok(out);
        }
        let bad = || MarkupError::InvalidBreak("attributes must look like time=\"2s\"".into());
        let eq = s.find('=').ok_or_else(bad)?;
        let key = s[..eq].trim();
        let rest = s[eq + 1..].trim_start();
        let quote = rest
            .chars()
            .next()
            .filter(|q| matches!(q, '"' | '\''))
            .ok_or_else(bad)?;
        let close = rest[1..].find(quote).ok_or_else(bad)?;
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(bad());
        }
        out.push((key, &rest[1..1 + close]));
        s = &rest[close + 2..];
    }
}

fn time_ms(value: &str) -> Result<u32, MarkupError> {
    let v = value.trim();
    let (number, scale) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return Err(MarkupError::InvalidBreak(format!(
            "time {value:?} needs a unit: \"500ms\" or \"2s\""
        )));
    };
    let number = number.trim();
    let parsed: Option<f64> = (!number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit() || c == '.'))
    .then(|| number.parse().ok())
    .flatten();
    match parsed.map(|n| n * scale) {
        Some(ms) if ms.is_finite() && ms <= f64::from(BREAK_MAX_MS) => Ok(ms.round() as u32),
        Some(_) => Err(MarkupError::InvalidBreak(format!(
            "time {value:?} is longer than {} s",
            BREAK_MAX_MS / 1000
        ))),
        None => Err(MarkupError::InvalidBreak(format!(
            "time {value:?} is not a number of ms or s"
        ))),
    }
}

fn strength_ms(value: &str) -> Result<u32, MarkupError> {
    Ok(match value.trim() {
        "none" => 0,
        "x-weak" => 100,
        "weak" => 250,
        "medium" => 500,
        "strong" => 750,
        "x-strong" => 1000,
        other => {
            return Err(MarkupError::InvalidBreak(format!(
                "strength {other:?} is not one of none, x-weak, weak, medium, strong, x-strong"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaks_split_the_text_and_other_tags_are_named() {
        assert_eq!(
            parse("Hello <break time=\"2s\"/> world<break time='250ms' />!").expect("test value"),
            vec![
                Piece::Text("Hello ".into()),
                Piece::Break(2000),
                Piece::Text("  world".into()),
                Piece::Break(250),
                Piece::Text(" !".into()),
            ]
        );
        assert_eq!(
            parse("<break/>Go").expect("test value"),
            vec![Piece::Break(500), Piece::Text(" Go".into())]
        );
        assert_eq!(
            parse("Wait<break strength=\"x-strong\"/>").expect("test value"),
            vec![Piece::Text("Wait".into()), Piece::Break(1000)]
        );
        assert_eq!(
            parse("1.5s: <break time=\"1.5s\"/>").expect("test value")[1],
            Piece::Break(1500)
        );
        for (script, tag) in [
            ("Hi <speak>there</speak>", "speak"),
            ("<prosody rate=\"slow\">x</prosody>", "prosody"),
            ("say </break> it", "break"),
            ("a <emphasis>b", "emphasis"),
        ] {
            match parse(script) {
                Err(MarkupError::UnsupportedTag(name)) if name == tag => {}
                other => panic!("{script:?}: {other:?}"),
            }
        }
        for script in [
            "<break time=\"11s\"/>",
            "<break time=\"2\"/>",
            "<break time=\"-1s\"/>",
            "<break time=\"2s\">",
            "<break time=2s/>",
            "<break pause=\"2s\"/>",
            "<break time=\"1s\" time=\"2s\"/>",
            "<break strength=\"huge\"/>",
            "a <break time=\"10s\"/>".repeat(13).as_str(),
        ] {
            assert!(
                matches!(parse(script), Err(MarkupError::InvalidBreak(_))),
                "{script:?}: {:?}",
                parse(script)
            );
        }
    }

    #[test]
    fn a_less_than_sign_that_opens_no_tag_is_text() {
        for script in ["a < b and c > d", "I <3 it", "x<y", "<", "if 2<3> 1"] {
            assert_eq!(
                parse(script).expect("test value"),
                vec![Piece::Text(script.into())],
                "{script:?}"
            );
        }
    }

    #[test]
    fn words_are_the_tokens_with_something_to_say() {
        assert_eq!(
            words(
                "Hi! I am here — <break time=\"1s\"/>for the \"first\" time... 3.5 million, café & co."
            ),
            [
                "Hi!",
                "I",
                "am",
                "here",
                "for",
                "the",
                "\"first\"",
                "time...",
                "3.5",
                "million,",
                "café",
                "&",
                "co."
            ]
        );
        assert_eq!(plain("a<break/>b"), "a  b");
        assert_eq!(
            pauses_ms(&parse("<break/>a<break time=\"2s\"/>").expect("test value")),
            2500
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Any text parses or is refused without a panic; what parses keeps every
            /// character outside its tags, and every break is within the limit.
            #[test]
            fn any_script_parses_or_is_refused(s in "\\PC{0,200}|[<>/=\"' a-z0-9.]{0,120}") {
                if let Ok(pieces) = parse(&s) {
                    for p in &pieces {
                        if let Piece::Break(ms) = p {
                            prop_assert!(*ms <= BREAK_MAX_MS);
                        }
                    }
                    if !s.contains('<') {
                        prop_assert_eq!(pieces, vec![Piece::Text(s.clone())]);
                    }
                }
            }
        }
    }
}
