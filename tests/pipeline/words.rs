//! Every word of the script, timed: the timeline's words (what captions, transcripts and the
//! caption highlight show) against real espeak-ng speech, SSML breaks as measured silence,
//! and the caption files made from them. No device needed: espeak-ng and fontdue only.

use reelgen::render::timeline::captions::CaptionTrack;
use reelgen::render::timeline::script::{self, Timeline};
use reelgen::render::timeline::text;
use reelgen::render::timeline::transcript::Transcript;
use reelgen::render::timeline::voice::Espeak;
use serde_json::{Value, json};

use super::generate::{catalog, params};

fn timeline(request: Value) -> Timeline {
    script::build(&params(request), &Espeak::new(catalog())).expect("timeline")
}

/// Scripts that lost words before: short function words espeak-ng merges ("I am", "for the",
/// "a", "à la"), contractions, numbers it marks once per digit group, abbreviations it reads
/// out, symbols, quotes, non-ASCII words, dashes between words, a script in German.
const TRICKY: [&str; 13] = [
    "Hi! I am trying reelgen for the first time.",
    "I am here. You are there. It is a cat, and a dog.",
    "It's a test of 3.5 million users, isn't it?",
    "Call 555-1234 or visit example.com at 10:30 on 2024-01-05.",
    "Café crème à la française — naïve façade.",
    "Dr. Smith & Mr. Jones met at St. Mary's, e.g. for tea, i.e. at 4 p.m.",
    "We grew 50% in Q3 – that's a lot of \"growth\"… isn't it?",
    "To be, or not to be: that is the question.",
    "A a a. I I I. Oh, an owl! An eel, on an oak, in an inn.",
    "Numbers: 1, 2, 3, 42, 1,000,000 and 3.14159 — all of them.",
    "He said “don’t” and she said ‘won’t’; they didn’t.",
    "Ünïcödé wörds, Straße, and ñandú are words too.",
    "Ok... so — what? (Really!) [Yes.]",
];

#[test]
fn every_word_of_a_tricky_script_is_timed_once_in_order_with_its_punctuation() {
    for script in TRICKY {
        let t = timeline(json!({"script": script, "fps": 25, "seed": 1}));
        let expected = text::words(script);
        let got: Vec<&str> = t.words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(got, expected, "{script:?}");
        let speech_ms = t.speech.as_ref().expect("speech").duration_ms();
        for w in &t.words {
            assert!(w.start_ms < w.end_ms, "{script:?}: {w:?}");
            assert!(
                w.end_ms <= speech_ms,
                "{script:?}: {w:?} past {speech_ms} ms"
            );
        }
        for pair in t.words.windows(2) {
            assert!(
                pair[0].start_ms < pair[1].start_ms && pair[0].end_ms <= pair[1].start_ms,
                "{script:?}: {pair:?}"
            );
        }

        // The caption files carry the same words, in order.
        let transcript = Transcript::from_words(&t.words);
        let from_cues: Vec<String> = transcript
            .cues()
            .iter()
            .flat_map(|c| c.text.split(' ').map(str::to_string).collect::<Vec<_>>())
            .collect();
        assert_eq!(from_cues, expected, "{script:?}");
        let srt = transcript.srt();
        let srt_words: Vec<&str> = srt_text_lines(&srt)
            .into_iter()
            .flat_map(|l| l.split(' '))
            .collect();
        assert_eq!(srt_words, expected, "{script:?}");

        // Burned-in captions show every word too.
        let track = CaptionTrack::build(&t.words, 1280, 720).expect("captions");
        let shown: usize = track.lines.iter().map(|l| l.words.len()).sum();
        assert_eq!(shown, expected.len(), "{script:?}");
    }
}

/// The text lines of a SubRip file (neither counters, timings nor blank lines).
fn srt_text_lines(srt: &str) -> Vec<&str> {
    srt.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .flat_map(|block| block.lines().skip(2))
        .collect()
}

#[test]
fn merged_function_words_start_inside_their_merged_span() {
    let t = timeline(json!({"script": "Hi! I am trying reelgen for the first time.", "seed": 1}));
    let at = |w: &str| t.words.iter().position(|x| x.text == w).expect(w);
    // "am" and "the" (no mark of their own) start strictly between their neighbours.
    for (before, word, after) in [("I", "am", "trying"), ("for", "the", "first")] {
        let (b, w, a) = (
            &t.words[at(before)],
            &t.words[at(word)],
            &t.words[at(after)],
        );
        assert!(
            b.start_ms + 40 <= w.start_ms && w.start_ms + 40 <= a.start_ms,
            "{before} {word} {after}: {b:?} {w:?} {a:?}"
        );
    }
}

/// Root mean square of the samples between two times.
fn rms(samples: &[i16], rate: u32, from_ms: u32, to_ms: u32) -> f64 {
    let at = |ms: u32| (u64::from(ms) * u64::from(rate) / 1000) as usize;
    let part = &samples[at(from_ms).min(samples.len())..at(to_ms).min(samples.len())];
    if part.is_empty() {
        return 0.0;
    }
    (part.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / part.len() as f64).sqrt()
}

#[test]
fn a_two_second_break_is_a_silent_gap_with_the_mouth_closed_and_no_tag_in_the_words() {
    let fps = 25u32;
    let plain = timeline(json!({"script": "Wait for it. Now!", "fps": fps, "seed": 3}));
    let t = timeline(
        json!({"script": "Wait for it. <break time=\"2s\"/> Now!", "fps": fps, "seed": 3}),
    );
    let words: Vec<&str> = t.words.iter().map(|w| w.text.as_str()).collect();
    assert_eq!(words, ["Wait", "for", "it.", "Now!"]);
    let (it, now) = (&t.words[2], &t.words[3]);
    let gap = now.start_ms - it.end_ms;
    assert!(gap >= 1900, "gap {gap} ms between {it:?} and {now:?}");
    // About two seconds longer than the same script without the break.
    let longer = t.duration_s() - plain.duration_s();
    assert!((1.9..=2.5).contains(&longer), "{longer} s longer");

    let speech = t.speech.as_ref().expect("speech");
    let loud = rms(&speech.samples, speech.sample_rate, it.start_ms, it.end_ms);
    let quiet = rms(
        &speech.samples,
        speech.sample_rate,
        it.end_ms + 50,
        now.start_ms - 50,
    );
    assert!(loud > 500.0, "the word is heard (RMS {loud})");
    assert!(
        quiet < 50.0,
        "the break is silent (RMS {quiet} against {loud})"
    );

    // The mouth is closed through the pause (co-articulation may start 60 ms early).
    let frame = |ms: u32| (u64::from(ms) * u64::from(fps) / 1000) as usize;
    for f in &t.frames[frame(it.end_ms + 100)..frame(now.start_ms - 100)] {
        assert!(f.mouth_open < 0.01, "open {} at {} s", f.mouth_open, f.time);
    }
    // Idle motion goes on: the head moves during the pause.
    let pause = &t.frames[frame(it.end_ms + 100)..frame(now.start_ms - 100)];
    let yaw: Vec<f32> = pause.iter().map(|f| f.yaw).collect();
    assert!(
        yaw.windows(2).any(|p| p[0] != p[1]),
        "the head keeps moving"
    );
}

#[test]
fn a_script_of_only_punctuation_and_breaks_is_a_silent_video_without_words() {
    let t = timeline(json!({"script": "... <break time=\"1500ms\"/> —", "fps": 10, "seed": 2}));
    assert!(t.words.is_empty());
    assert!(t.duration_s() >= 1.5, "{} s", t.duration_s());
    assert!(t.frames.iter().all(|f| f.mouth_open < 0.01));
}
