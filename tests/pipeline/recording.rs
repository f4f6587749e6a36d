//! Lip-sync to a recording: a real recording (`espeak-ng -w`, the command) decoded by
//! GStreamer, the mouth following its sound, its length kept to the frame, and files that are
//! not audio — or too long, however small — refused. No device needed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reelgen::render::media::decode::{DecodeError, Limits, Pcm, RECORDING_LIMITS, decode_audio};
use reelgen::render::timeline::script::{self, Timeline};
use reelgen::render::timeline::voice::{Espeak, Speech};
use serde_json::json;

use super::generate::{catalog, params};

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("reelgen-rec-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

/// A recording made by the `espeak-ng` command (installed by `scripts/bootstrap.sh`).
pub(crate) fn espeak_wav(path: &Path, text: &str) {
    let out = Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(path)
        .arg(text)
        .output()
        .expect("the espeak-ng command (scripts/bootstrap.sh installs it)");
    assert!(out.status.success(), "espeak-ng: {out:?}");
}

/// A pipeline of `gst-launch-1.0` (gstreamer1.0-tools) writing `path`.
fn gst_launch(description: &str) {
    let out = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(description.split_whitespace())
        .output()
        .expect("gst-launch-1.0 (gstreamer1.0-tools)");
    assert!(
        out.status.success(),
        "gst-launch-1.0 {description}: {out:?}"
    );
}

fn timeline_of(pcm: &Pcm, fps: u32) -> Timeline {
    let p = params(json!({"audio": {"id": uuid::Uuid::nil()}, "fps": fps, "seed": 4}));
    let speech = Speech {
        sample_rate: pcm.sample_rate,
        samples: pcm.samples.clone(),
        ..Speech::default()
    };
    script::build_with(&p, &Espeak::new(catalog()), Some(speech)).expect("timeline")
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn a_recording_lip_syncs_to_its_envelope_and_keeps_its_length_to_the_frame() {
    let d = dir();
    let wav = d.join("rec.wav");
    espeak_wav(
        &wav,
        "Hello there. This is my own recorded voice. Watch my lips: open, close, and open again!",
    );
    let pcm = decode_audio(&wav, RECORDING_LIMITS).expect("decodes");
    // espeak-ng writes 22,050 Hz; the header's length, resampled, is what comes out.
    let header_s = (std::fs::metadata(&wav).expect("wav").len() - 44) as f64 / 2.0 / 22_050.0;
    assert!(
        (pcm.duration_s() - header_s).abs() < 0.01,
        "{} vs {header_s}",
        pcm.duration_s()
    );

    let fps = 25;
    let t = timeline_of(&pcm, fps);
    assert!(
        (t.duration_s() - pcm.duration_s()).abs() <= 1.0 / f64::from(fps),
        "{} s of frames for {} s of sound",
        t.duration_s(),
        pcm.duration_s()
    );
    assert!(t.words.is_empty(), "a recording has no script to caption");
    let speech = t.speech.as_ref().expect("the recording is the sound track");
    assert_eq!(speech.samples.len(), pcm.samples.len());

    // The envelope: RMS of the sound over each frame's time.
    let per_frame = pcm.sample_rate as usize / fps as usize;
    let envelope: Vec<f64> = (0..t.frames.len())
        .map(|i| {
            let part = &pcm.samples[(i * per_frame).min(pcm.samples.len())
                ..((i + 1) * per_frame).min(pcm.samples.len())];
            let n = part.len().max(1) as f64;
            (part.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / n).sqrt()
        })
        .collect();
    let open: Vec<f64> = t.frames.iter().map(|f| f64::from(f.mouth_open)).collect();
    let r = pearson(&open, &envelope);
    eprintln!("mouth openness against the envelope: r = {r:.3}");
    assert!(r >= 0.6, "mouth openness against the envelope: r = {r:.3}");
    // Silence closes the mouth: the quietest frames have it (nearly) shut.
    let loudest = envelope.iter().copied().fold(0.0, f64::max);
    for (o, e) in open.iter().zip(&envelope) {
        if *e < loudest * 0.005 {
            assert!(*o < 0.15, "open {o} in silence");
        }
    }
    let widest = open.iter().copied().fold(0.0, f64::max);
    assert!(
        widest > 0.5,
        "the mouth opens wide on loud vowels ({widest})"
    );
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn every_accepted_format_decodes_to_the_same_length() {
    let d = dir();
    let wav = d.join("rec.wav");
    espeak_wav(&wav, "One recording in five formats.");
    let reference = decode_audio(&wav, RECORDING_LIMITS)
        .expect("wav")
        .duration_s();
    let src = format!(
        "filesrc location={} ! wavparse ! audioconvert ! audioresample",
        wav.display()
    );
    for (name, encode) in [
        ("rec.mp3", "lamemp3enc ! id3v2mux"),
        ("rec.ogg", "audio/x-raw,rate=48000 ! opusenc ! oggmux"),
        ("rec.flac", "flacenc"),
        ("rec.m4a", "voaacenc ! mp4mux"),
    ] {
        let out = d.join(name);
        gst_launch(&format!(
            "{src} ! {encode} ! filesink location={}",
            out.display()
        ));
        let got = decode_audio(&out, RECORDING_LIMITS)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .duration_s();
        // Encoders pad a little (MP3 and AAC frames, Opus pre-skip): within 0.1 s.
        assert!(
            (got - reference).abs() < 0.1,
            "{name}: {got} s vs {reference} s"
        );
    }
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn what_is_not_audio_or_is_too_long_is_refused() {
    let d = dir();
    let text = d.join("notes.wav");
    std::fs::write(
        &text,
        "This is a text file, whatever its name says.\n".repeat(50),
    )
    .expect("write");
    let empty = d.join("empty.mp3");
    std::fs::write(&empty, b"").expect("write");
    let wav = d.join("rec.wav");
    espeak_wav(&wav, "A recording to cut short.");
    let mp3 = d.join("rec.mp3");
    gst_launch(&format!(
        "filesrc location={} ! wavparse ! audioconvert ! lamemp3enc ! filesink location={}",
        wav.display(),
        mp3.display()
    ));
    let truncated = d.join("truncated.mp3");
    let bytes = std::fs::read(&mp3).expect("mp3");
    std::fs::write(&truncated, &bytes[..bytes.len().min(200)]).expect("write");
    // Text that typefinds as LRC subtitles: decodebin exposes a subtitle pad and no audio.
    let lyrics = d.join("lyrics.bin");
    std::fs::write(
        &lyrics,
        "[-1, 123, 10695, 185, 14729, 349448, 410, 304, 65667, 272]",
    )
    .expect("write");
    for bad in [&text, &empty, &truncated, &lyrics] {
        match decode_audio(bad, RECORDING_LIMITS) {
            Err(DecodeError::NotAudio(_)) => {}
            other => panic!("{}: {other:?}", bad.display()),
        }
    }

    // Small files that decode to more than ten minutes: 11 min of 8 kHz 8-bit sound (5 MB),
    // and 30 min of FLAC silence (a few hundred KB, a decompression bomb).
    let long = d.join("long.wav");
    gst_launch(&format!(
        "audiotestsrc wave=sine num-buffers=660 samplesperbuffer=8000 ! audio/x-raw,rate=8000,channels=1,format=U8 ! wavenc ! filesink location={}",
        long.display()
    ));
    let bomb = d.join("bomb.flac");
    gst_launch(&format!(
        "audiotestsrc wave=silence num-buffers=1800 samplesperbuffer=8000 ! audio/x-raw,rate=8000,channels=1 ! flacenc ! filesink location={}",
        bomb.display()
    ));
    assert!(std::fs::metadata(&bomb).expect("bomb").len() < 2_000_000);
    for too_long in [&long, &bomb] {
        match decode_audio(too_long, RECORDING_LIMITS) {
            Err(DecodeError::TooLong(_)) => {}
            other => panic!("{}: {other:?}", too_long.display()),
        }
    }
    // The wall-time bound: a decode that may take no time at all stops at once.
    let no_time = Limits {
        max_seconds: 600.0,
        timeout: Duration::ZERO,
    };
    assert!(matches!(
        decode_audio(&wav, no_time),
        Err(DecodeError::Timeout(_))
    ));
    let _ = std::fs::remove_dir_all(d);
}
