//! The generation pipeline on this machine's device (lavapipe in CI): shaders, timeline,
//! a real MP4 checked with gst-discoverer, determinism, cancellation.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use reelgen::assets::Catalog;
use reelgen::domain::{self, VideoParams};
use reelgen::generate::{GenerateError, Generator, GeneratorOptions, JobSpec};
use serde_json::{Value, json};

fn catalog() -> Arc<Catalog> {
    Arc::new(Catalog::embedded().expect("catalog"))
}

fn params(v: Value) -> VideoParams {
    domain::parse_video_request(&v, &catalog(), "", 1).expect("valid request")
}

fn generator() -> Arc<Generator> {
    static G: OnceLock<Arc<Generator>> = OnceLock::new();
    G.get_or_init(|| {
        Arc::new(
            Generator::new(catalog()).expect("a Vulkan device (lavapipe) and x264 are installed"),
        )
    })
    .clone()
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("reelgen-gen-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    dir.join(name)
}

#[test]
fn every_shader_is_valid_wgsl() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("shaders dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            let src = std::fs::read_to_string(&path).expect("read");
            let module = naga::front::wgsl::parse_str(&src)
                .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&src)));
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::all(),
            )
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            assert!(
                src.starts_with("//"),
                "{} starts with its description comment",
                path.display()
            );
            count += 1;
        }
    }
    assert!(count >= 1);
}

#[test]
fn the_timeline_follows_the_speech_and_is_deterministic() {
    let g = generator();
    let p = params(json!({"script": "Hello world. Open your mouth wide!", "fps": 25, "seed": 7}));
    let a = g.timeline(&p).expect("timeline");
    let b = g.timeline(&p).expect("timeline");
    // Seed-driven motion is exact; the mouth follows espeak's phoneme times, which espeak-ng
    // 1.51 reproduces to about a millisecond, so mouth shapes agree within a small tolerance.
    assert_eq!(a.frames.len(), b.frames.len());
    for (x, y) in a.frames.iter().zip(&b.frames) {
        assert_eq!(
            (x.blink, x.gaze_x, x.roll, x.breath),
            (y.blink, y.gaze_x, y.roll, y.breath)
        );
        assert!(
            (x.mouth_open - y.mouth_open).abs() < 0.08,
            "frame at {} s: {} vs {}",
            x.time,
            x.mouth_open,
            y.mouth_open
        );
    }
    let speech = a.speech.as_ref().expect("default voice speaks");
    assert!(speech.phonemes.len() > 10);
    assert!(
        speech.words.iter().any(|w| w.text == "mouth"),
        "{:?}",
        speech.words
    );
    let audio_s = f64::from(speech.duration_ms()) / 1000.0;
    assert!(
        (a.duration_s() - audio_s).abs() <= 1.0 / 25.0,
        "{} vs {audio_s}",
        a.duration_s()
    );
    let max_open = a.frames.iter().map(|f| f.mouth_open).fold(0.0f32, f32::max);
    assert!(
        max_open > 0.3,
        "the mouth opens while speaking ({max_open})"
    );
    assert!(a.frames[0].mouth_open < 0.1, "closed before the first word");
    let c = g
        .timeline(&params(
            json!({"script": "Hello world. Open your mouth wide!", "fps": 25, "seed": 8}),
        ))
        .expect("timeline");
    assert!(
        a.frames
            .iter()
            .zip(&c.frames)
            .any(|(x, y)| x.roll != y.roll),
        "another seed moves the head differently"
    );
}

fn discover(path: &Path) -> String {
    let out = Command::new("gst-discoverer-1.0")
        .arg("-v")
        .arg(path)
        .output()
        .expect("gst-discoverer-1.0 (gstreamer1.0-plugins-base-apps / tools)");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn a_short_video_is_a_valid_mp4_with_h264_aac_and_a_thumbnail() {
    let g = generator();
    let out = tmp("video.mp4");
    let thumb = out.with_file_name("thumb.jpg");
    let p = params(
        json!({"script": "Hi! This is reelgen.", "dimension": {"width": 320, "height": 180}, "fps": 15, "quality": "draft", "seed": 3}),
    );
    let spec = JobSpec {
        params: p,
        output: out.clone(),
        thumbnail: Some(thumb.clone()),
        live: false,
    };
    let mut reports = 0;
    let outcome = g
        .run(
            &spec,
            &AtomicBool::new(false),
            &mut |_| reports += 1,
            &mut |_| {},
        )
        .expect("generated");
    assert!(reports >= 2);
    assert!(outcome.frames > 10);
    let bytes = std::fs::read(&out).expect("mp4");
    let moov = bytes.windows(4).position(|w| w == b"moov").expect("moov");
    let mdat = bytes.windows(4).position(|w| w == b"mdat").expect("mdat");
    assert!(moov < mdat, "fast start: moov before mdat");
    let info = discover(&out);
    assert!(info.contains("H.264"), "{info}");
    assert!(
        info.contains("MPEG-4 AAC") || info.contains("AAC"),
        "{info}"
    );
    assert!(
        info.contains("Width: 320") && info.contains("Height: 180"),
        "{info}"
    );
    assert!(info.contains("Frame rate: 15/1"), "{info}");
    let jpeg = std::fs::read(&thumb).expect("thumbnail");
    assert_eq!(&jpeg[..2], &[0xff, 0xd8], "a JPEG");
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().expect("dir"))
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "no temporary files remain");
}

#[test]
fn the_live_branch_cuts_an_init_segment_then_moof_fragments() {
    let g = generator();
    let out = tmp("live.mp4");
    let p = params(
        json!({"script": "One two three four five six seven eight.", "dimension": {"width": 256, "height": 144}, "fps": 10, "quality": "draft"}),
    );
    let spec = JobSpec {
        params: p,
        output: out,
        thumbnail: None,
        live: true,
    };
    let mut chunks = Vec::new();
    g.run(&spec, &AtomicBool::new(false), &mut |_| {}, &mut |c| {
        chunks.push(c)
    })
    .expect("generated");
    let Some(reelgen::media::LiveChunk::Init { data, mime }) = chunks.first() else {
        panic!("init first")
    };
    assert_eq!(&data[4..8], b"ftyp");
    assert!(data.windows(4).any(|w| w == b"moov"));
    assert!(mime.starts_with("video/mp4; codecs=\"avc1."), "{mime}");
    assert!(mime.contains("mp4a.40.2"), "{mime}");
    let fragments: Vec<&Vec<u8>> = chunks
        .iter()
        .skip(1)
        .filter_map(|c| match c {
            reelgen::media::LiveChunk::Fragment(f) => Some(f),
            _ => None,
        })
        .collect();
    assert!(fragments.len() >= 2, "{} fragments", fragments.len());
    for f in fragments {
        assert_eq!(&f[4..8], b"moof");
    }
}

#[test]
fn cancelling_stops_within_a_second_and_leaves_no_file() {
    let g = generator();
    let out = tmp("cancel.mp4");
    let script = "This is a long script that would take a while to render. ".repeat(20);
    let p = params(
        json!({"script": script, "dimension": {"width": 640, "height": 360}, "fps": 30, "quality": "draft"}),
    );
    let started = Arc::new(AtomicBool::new(false));
    let flag = started.clone();
    let handle = g.spawn(
        JobSpec {
            params: p,
            output: out.clone(),
            thumbnail: None,
            live: false,
        },
        move |p| {
            if p.frames_done > 5 {
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        },
        |_| {},
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !started.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    handle.cancel();
    let res = handle.join();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "stopped in {:?}",
        t.elapsed()
    );
    assert!(matches!(res, Err(GenerateError::Cancelled)), "{res:?}");
    assert!(!out.exists());
    let dir = out.parent().expect("dir");
    assert_eq!(
        std::fs::read_dir(dir).expect("dir").count(),
        0,
        "no partial file"
    );
}

/// A generator with its own GPU scheduler, batching `batch` frames per job and submission.
fn generator_with(batch: usize, cache: usize) -> Generator {
    Generator::with_options(
        catalog(),
        GeneratorOptions {
            batch_size_auto_tune: false,
            batch_size: batch,
            model_cache_size: cache,
            ..GeneratorOptions::default()
        },
    )
    .expect("a Vulkan device (lavapipe) and x264 are installed")
}

#[test]
fn batched_submissions_give_the_same_frames_as_one_at_a_time() {
    let one = generator_with(1, 4);
    let eight = generator_with(8, 4);
    let p = params(
        json!({"script": "Batching must not change a pixel.", "dimension": {"width": 320, "height": 180}, "seed": 3}),
    );
    // One timeline for both, so only the batching differs.
    let timeline = one.timeline(&p).expect("timeline");
    let at: Vec<usize> = (0..timeline.frames.len().min(20)).collect();
    let a = one.still_frames(&p, &timeline, &at).expect("frames");
    let b = eight.still_frames(&p, &timeline, &at).expect("frames");
    assert_eq!(a.len(), at.len());
    assert!(a == b, "frames differ between batch sizes 1 and 8");
    let s = eight.scheduler().stats().snapshot();
    assert_eq!(s.frames, at.len() as u64);
    assert_eq!(s.submissions, at.len().div_ceil(8) as u64, "{s:?}");
}

#[test]
fn the_model_cache_keeps_a_look_resident_and_evicts_the_least_recent() {
    let g = generator_with(4, 1);
    let look = |avatar: &str| {
        let p = params(
            json!({"script": "Hi.", "avatar": {"id": avatar}, "dimension": {"width": 256, "height": 144}, "voice": null}),
        );
        let t = g.timeline(&p).expect("timeline");
        g.still_frames(&p, &t, &[0]).expect("frame")
    };
    let ids: Vec<String> = catalog().avatars.iter().map(|a| a.id.clone()).collect();
    let first = look(&ids[0]);
    let again = look(&ids[0]);
    assert_eq!(first, again, "a cached look renders the same frame");
    let s = g.scheduler().stats().snapshot();
    assert_eq!((s.model_misses, s.model_hits), (1, 1), "{s:?}");
    look(&ids[1]);
    look(&ids[0]);
    let s = g.scheduler().stats().snapshot();
    assert_eq!(
        (s.model_misses, s.model_hits),
        (3, 1),
        "capacity 1 evicts: {s:?}"
    );
    assert_eq!(s.models_resident, 1);
    assert_eq!(s.model_cache_hit_rate, Some(0.25));
}

#[test]
fn concurrent_jobs_share_gpu_submissions() {
    let g = Arc::new(generator_with(4, 4));
    let spawn = |name: &str, seed: u64| {
        let p = params(
            json!({"script": "Two jobs render at once and share the device.", "dimension": {"width": 320, "height": 180}, "quality": "draft", "seed": seed}),
        );
        g.spawn(
            JobSpec {
                params: p,
                output: tmp(name),
                thumbnail: None,
                live: false,
            },
            |_| {},
            |_| {},
        )
    };
    let (a, b) = (spawn("a.mp4", 1), spawn("b.mp4", 2));
    let (a, b) = (a.join().expect("job a"), b.join().expect("job b"));
    let s = g.scheduler().stats().snapshot();
    assert_eq!(s.frames, a.frames + b.frames);
    // Alone, each job would need a submission per batch of 4.
    let alone = a.frames.div_ceil(4) + b.frames.div_ceil(4);
    assert!(
        s.submissions < alone,
        "{} submissions for {} frames: no cross-job batching ({s:?})",
        s.submissions,
        s.frames
    );
    assert!(s.frames_per_submission > 4.0, "{s:?}");
    // A job closes its target as it ends; the scheduler takes the message a moment later.
    let deadline = Instant::now() + Duration::from_secs(2);
    while g.scheduler().stats().snapshot().jobs_open > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        g.scheduler().stats().snapshot().jobs_open,
        0,
        "jobs close their targets"
    );
}

#[test]
fn the_encoder_probe_falls_back_past_denied_elements() {
    use reelgen::media::{MediaError, probe_encoder, probe_encoder_except};
    // Here (no GPU) the first working encoder is x264enc.
    let first = probe_encoder().expect("an H.264 encoder");
    assert_eq!(first.element, "x264enc");
    assert!(!first.hardware);
    // Without it, the next in line that works: openh264enc.
    let next = probe_encoder_except(&["x264enc"]).expect("a fallback encoder");
    assert_eq!(next.element, "openh264enc");
    // None left: a clear error naming what was tried, not a panic.
    let all = [
        "nvh264enc",
        "nvcudah264enc",
        "vah264enc",
        "vaapih264enc",
        "qsvh264enc",
        "x264enc",
        "openh264enc",
    ];
    match probe_encoder_except(&all) {
        Err(MediaError::NoEncoder(why)) => assert_eq!(why, "none installed"),
        other => panic!("expected NoEncoder, got {other:?}"),
    }
}

#[test]
fn bad_input_is_a_typed_error_never_a_panic() {
    let cat = catalog();
    // Refused before any work, each with its field.
    for bad in [
        json!({"script": "   "}),
        json!({"script": "Hi", "dimension": {"width": 321, "height": 180}}),
        json!({"script": "Hi", "fps": 61}),
        json!({"script": "Hi", "avatar": {"id": "nobody"}}),
        json!({"script": "Hi", "voice": {"id": "xx-none"}}),
    ] {
        assert!(
            domain::parse_video_request(&bad, &cat, "", 1).is_err(),
            "{bad} was accepted"
        );
    }
    // Past validation (e.g. an avatar removed from the catalogue since): a typed error.
    let g = generator();
    let mut p = params(json!({"script": "Hello.", "dimension": {"width": 256, "height": 144}}));
    p.avatar.id = "removed".into();
    let out = tmp("bad.mp4");
    let res = g.run(
        &JobSpec {
            params: p,
            output: out.clone(),
            thumbnail: None,
            live: false,
        },
        &AtomicBool::new(false),
        &mut |_| {},
        &mut |_| {},
    );
    assert!(
        matches!(res, Err(GenerateError::UnknownAvatar(_))),
        "{res:?}"
    );
    assert_eq!(res.err().map(|e| e.code()), Some("invalid_avatar"));
    assert!(!out.exists());
}
