//! The generation pipeline on this machine's device (lavapipe in CI): shaders, timeline,
//! a real MP4 checked with gst-discoverer, determinism, cancellation.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use reelgen::render::assets::Catalog;
use reelgen::render::pipeline::{GenerateError, Generator, GeneratorOptions, JobSpec};
use reelgen::{render::params::VideoParams, videos::request};
use serde_json::{Value, json};

pub(crate) fn catalog() -> Arc<Catalog> {
    Arc::new(Catalog::embedded().expect("catalog"))
}

pub(crate) fn params(v: Value) -> VideoParams {
    request::parse_video_request(&v, &catalog(), "", 1).expect("valid request")
}

/// Whether a missing device fails the tests instead of skipping them (`REELGEN_REQUIRE_GPU=1`).
fn gpu_required() -> bool {
    std::env::var("REELGEN_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// Skips the calling test (returns `None`, printing why) where there is no device, or fails it
/// when one is required (see the crate doc).
pub(crate) fn or_skip<T>(what: Result<T, String>) -> Option<T> {
    match what {
        Ok(v) => Some(v),
        Err(why) if gpu_required() => panic!("REELGEN_REQUIRE_GPU=1 but {why}"),
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// The generator the tests share: `None` (test skipped, reason printed) without a Vulkan
/// adapter or an H.264 encoder.
pub(crate) fn generator() -> Option<Arc<Generator>> {
    static G: OnceLock<Result<Arc<Generator>, String>> = OnceLock::new();
    or_skip(
        G.get_or_init(|| {
            Generator::new(catalog())
                .map(Arc::new)
                .map_err(|e| format!("no Vulkan device and H.264 encoder here: {e}"))
        })
        .clone(),
    )
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
    let Some(g) = generator() else { return };
    let p = params(json!({"script": "Hello world. Open your mouth wide!", "fps": 25, "seed": 7}));
    let a = g.timeline(&p).expect("timeline");
    // Something else spoken in between must not change how the same script is spoken.
    g.timeline(&params(
        json!({"script": "Another voice, another text.", "voice": {"id": "en-gb-1", "speed": 1.3}}),
    ))
    .expect("timeline");
    let b = g.timeline(&p).expect("timeline");
    assert!(a.frames == b.frames, "same input + seed, same frames");
    assert_eq!(a.visemes, b.visemes);
    let (sa, sb) = (
        a.speech.as_ref().expect("speech"),
        b.speech.as_ref().expect("speech"),
    );
    assert_eq!(sa.phonemes, sb.phonemes);
    assert!(sa.samples == sb.samples, "same audio, sample for sample");
    let speech = a.speech.as_ref().expect("default voice speaks");
    assert!(speech.phonemes.len() > 10);
    // Captions show every word with the punctuation it carries.
    let texts: Vec<&str> = a.words.iter().map(|w| w.text.as_str()).collect();
    assert_eq!(texts, ["Hello", "world.", "Open", "your", "mouth", "wide!"]);
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
    let Some(g) = generator() else { return };
    let out = tmp("video.mp4");
    let thumb = out.with_file_name("thumb.jpg");
    let p = params(
        json!({"script": "Hi! This is reelgen.", "dimension": {"width": 320, "height": 180}, "fps": 15, "quality": "draft", "seed": 3}),
    );
    let spec = JobSpec {
        params: p,
        output: out.clone(),
        thumbnail: Some(thumb.clone()),
        transcript: None,
        recording: None,
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
    let Some(g) = generator() else { return };
    let out = tmp("live.mp4");
    let p = params(
        json!({"script": "One two three four five six seven eight.", "dimension": {"width": 256, "height": 144}, "fps": 10, "quality": "draft"}),
    );
    let spec = JobSpec {
        params: p,
        output: out,
        thumbnail: None,
        transcript: None,
        recording: None,
        live: true,
    };
    let mut chunks = Vec::new();
    g.run(&spec, &AtomicBool::new(false), &mut |_| {}, &mut |c| {
        chunks.push(c)
    })
    .expect("generated");
    let Some(reelgen::render::media::LiveChunk::Init { data, mime }) = chunks.first() else {
        panic!("init first")
    };
    assert_eq!(&data[4..8], b"ftyp");
    assert!(data.windows(4).any(|w| w == b"moov"));
    assert!(mime.starts_with("video/mp4; codecs=\"avc1."), "{mime}");
    assert!(mime.contains("mp4a.40.2"), "{mime}");
    // The codec string names the profile, compatibility and level the init segment's avcC
    // box carries (bytes 1–3 of its body): what a browser's MSE checks it against.
    let at = data
        .windows(4)
        .position(|w| w == b"avcC")
        .expect("avcC box");
    let avcc = format!(
        "avc1.{:02x}{:02x}{:02x}",
        data[at + 5],
        data[at + 6],
        data[at + 7]
    );
    assert!(mime.to_lowercase().contains(&avcc), "{mime} vs {avcc}");
    let fragments: Vec<&Vec<u8>> = chunks
        .iter()
        .skip(1)
        .filter_map(|c| match c {
            reelgen::render::media::LiveChunk::Fragment(f) => Some(f),
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
    let Some(g) = generator() else { return };
    let out = tmp("cancel.mp4");
    let script = "This is a long script that would take a while to render. ".repeat(20);
    let p = params(
        json!({"script": script, "dimension": {"width": 640, "height": 360}, "fps": 30, "quality": "draft"}),
    );
    // The job waits in its progress report once it has frames, until the cancel is sent:
    // mid-render by construction, however fast this machine is.
    let started = Arc::new(AtomicBool::new(false));
    let cancel = Arc::new(AtomicBool::new(false));
    let (flag, held) = (started.clone(), cancel.clone());
    let handle = g.spawn_with(
        JobSpec {
            params: p,
            output: out.clone(),
            thumbnail: None,
            transcript: None,
            recording: None,
            live: false,
        },
        cancel.clone(),
        move |p| {
            if p.frames_done > 5 {
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
                while !held.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        },
        |_| {},
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while !started.load(std::sync::atomic::Ordering::Relaxed) {
        assert!(Instant::now() < deadline, "the job never reached frame 5");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    handle.cancel();
    let res = handle.join();
    // Stopped at the next frame boundary; the bound is generous because the job thread runs
    // at nice 19 and a busy machine may keep it waiting for a core.
    assert!(
        t.elapsed() < Duration::from_secs(30),
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
fn generator_with(batch: usize, cache: usize) -> Option<Generator> {
    or_skip(
        Generator::with_options(
            catalog(),
            GeneratorOptions {
                batch_size_auto_tune: false,
                batch_size: batch,
                model_cache_size: cache,
                ..GeneratorOptions::default()
            },
        )
        .map_err(|e| format!("no Vulkan device and H.264 encoder here: {e}")),
    )
}

#[test]
fn batched_submissions_give_the_same_frames_as_one_at_a_time() {
    let Some(one) = generator_with(1, 4) else {
        return;
    };
    let Some(eight) = generator_with(8, 4) else {
        return;
    };
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
    let Some(g) = generator_with(4, 1) else {
        return;
    };
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
    let Some(g) = generator_with(4, 4).map(Arc::new) else {
        return;
    };
    // Both jobs meet at their first report with frames done and go on together, so their
    // rendering overlaps by construction, not because the machine happened to run both.
    let meet = Arc::new(std::sync::Barrier::new(2));
    let spawn = |name: &str, seed: u64| {
        let p = params(
            json!({"script": "Two jobs render at once and share the device. ".repeat(6), "dimension": {"width": 320, "height": 180}, "quality": "draft", "seed": seed}),
        );
        let (meet, mut met) = (meet.clone(), false);
        g.spawn(
            JobSpec {
                params: p,
                output: tmp(name),
                thumbnail: None,
                transcript: None,
                recording: None,
                live: false,
            },
            move |p| {
                if !met && p.frames_done > 0 {
                    met = true;
                    meet.wait();
                }
            },
            |_| {},
        )
    };
    let (a, b) = (spawn("a.mp4", 1), spawn("b.mp4", 2));
    let (a, b) = (a.join().expect("job a"), b.join().expect("job b"));
    let s = g.scheduler().stats().snapshot();
    assert_eq!(s.frames, a.frames + b.frames);
    // A submission holds the batch size's 4 frames; while both run each job gets half of
    // them and a round takes a batch from each (a shared submission), so there are fewer
    // submissions than the jobs' 2-frame batches, and none holds more than 4 (each job keeps
    // fewer frames in flight instead).
    let separate = a.frames.div_ceil(2) + b.frames.div_ceil(2);
    assert!(
        s.submissions < separate,
        "{} submissions for {} frames: no cross-job batching ({s:?})",
        s.submissions,
        s.frames
    );
    assert!(s.shared_submissions > 0, "{s:?}");
    // Frames from both jobs share submissions, never more than the batch size in one.
    assert!(
        s.frames_per_submission > 2.0 && s.frames_per_submission <= 4.0,
        "{s:?}"
    );
    // A job closes its target as it ends; the scheduler takes the message a moment later.
    let deadline = Instant::now() + Duration::from_secs(30);
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
fn a_writer_dropped_before_it_finishes_stops_and_leaves_no_partial_file() {
    use reelgen::render::media::{EncodeSettings, Mp4Writer, probe_encoder};
    use reelgen::render::params::Quality;
    let dir = std::env::temp_dir().join(format!("reelgen-writer-{}", uuid::Uuid::new_v4()));
    let dest = dir.join("video.mp4");
    let settings = EncodeSettings {
        width: 128,
        height: 128,
        fps: 10,
        quality: Quality::Draft,
        audio_rate: None,
        live: false,
    };
    let encoder = probe_encoder().expect("an H.264 encoder");
    let writer = Mp4Writer::start(&settings, &encoder, &dest).expect("writer starts");
    for i in 0..5 {
        writer
            .push_frame(vec![128u8; 128 * 128 * 3 / 2], i)
            .expect("frame pushed");
    }
    let partials = || {
        std::fs::read_dir(&dir)
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".part.mp4"))
            .count()
    };
    assert_eq!(partials(), 1, "the writer writes to a partial file first");
    // An early return (error, cancel) drops the writer: no `abort()` to remember.
    drop(writer);
    assert_eq!(partials(), 0, "the partial file is removed");
    assert!(!dest.exists(), "nothing was renamed into place");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_encoder_probe_falls_back_past_denied_elements() {
    use reelgen::render::media::{MediaError, probe_encoder, probe_encoder_except};
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
            request::parse_video_request(&bad, &cat, "", 1).is_err(),
            "{bad} was accepted"
        );
    }
    // Past validation (e.g. an avatar removed from the catalogue since): a typed error.
    let Some(g) = generator() else { return };
    let mut p = params(json!({"script": "Hello.", "dimension": {"width": 256, "height": 144}}));
    p.avatar.id = "removed".into();
    let out = tmp("bad.mp4");
    let res = g.run(
        &JobSpec {
            params: p,
            output: out.clone(),
            thumbnail: None,
            transcript: None,
            recording: None,
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

#[test]
fn each_viseme_peaks_within_a_frame_of_its_phoneme_and_pauses_close_the_mouth() {
    let Some(g) = generator() else { return };
    for fps in [25u32, 60] {
        let p = params(json!({
            "script": "Hello world. Open your mouth wide, and then... stop! Five big apples.",
            "fps": fps,
            "seed": 2
        }));
        let t = g.timeline(&p).expect("timeline");
        let speech = t.speech.as_ref().expect("speech");
        let frame_ms = 1000.0 / f64::from(fps);
        let at = |i: usize| i as f64 * frame_ms;
        let end_ms = f64::from(speech.duration_ms());
        let mut checked = 0;
        let mut previous = reelgen::render::timeline::script::Viseme::Sil;
        for (k, ph) in speech.phonemes.iter().enumerate() {
            let start = f64::from(ph.start_ms);
            let end = speech
                .phonemes
                .get(k + 1)
                .map_or(end_ms, |n| f64::from(n.start_ms));
            let v = reelgen::render::timeline::script::viseme_of(&ph.name);
            if end <= start {
                continue; // zero-length marker
            }
            // A run of phonemes with one mouth shape (`n` after `t`, a pause after a pause)
            // holds the shape its first phoneme reached.
            let same_run = v == previous;
            previous = v;
            if same_run {
                assert!(
                    t.visemes.weight(v, start) > 0.0,
                    "{} at {start} ms",
                    ph.name
                );
                continue;
            }
            // Continuous: full weight at espeak's time for this phoneme.
            assert!(
                (t.visemes.weight(v, start) - 1.0).abs() < 1e-9,
                "{} at {start} ms: weight {}",
                ph.name,
                t.visemes.weight(v, start)
            );
            // Sampled at frames from one frame before to the phoneme's end: the strongest
            // frame for its viseme is within one frame of the phoneme's time.
            let frames: Vec<usize> = (0..t.frames.len())
                .filter(|&i| at(i) >= start - frame_ms && at(i) <= end)
                .collect();
            let Some(best) = frames.iter().copied().max_by(|&a, &b| {
                t.visemes
                    .weight(v, at(a))
                    .total_cmp(&t.visemes.weight(v, at(b)))
                    .then(b.cmp(&a)) // the earliest of equals
            }) else {
                continue;
            };
            assert!(
                (at(best) - start).abs() <= frame_ms + 1e-9,
                "{} ({v:?}) at {start} ms peaks at frame {best} ({} ms), {fps} fps",
                ph.name,
                at(best)
            );
            checked += 1;
        }
        assert!(checked > 30, "{checked} phonemes checked");
        // The frames follow the track: what the kernel gets is the track's mouth.
        for (i, f) in t.frames.iter().enumerate() {
            let m = t.visemes.shape_at(at(i));
            assert!((f64::from(f.mouth_open) - m[0]).abs() < 1e-6);
        }
        // Silent gaps (the sentence pauses, before and after speech): the mouth is shut
        // from the pause's start until it anticipates the next sound.
        let pauses: Vec<_> = t
            .visemes
            .segments()
            .iter()
            .filter(|s| s.viseme == reelgen::render::timeline::script::Viseme::Sil)
            .copied()
            .collect();
        assert!(pauses.len() >= 4, "{pauses:?}");
        let mut closed = 0;
        for s in &pauses {
            for (i, f) in t.frames.iter().enumerate() {
                let ms = at(i);
                if ms >= s.start_ms
                    && ms + reelgen::render::timeline::script::ANTICIPATION_MS <= s.end_ms
                {
                    assert_eq!(f.mouth_open, 0.0, "open at {ms} ms in a pause");
                    closed += 1;
                }
            }
        }
        assert!(closed >= 10, "{closed} closed frames");
        assert_eq!(t.frames[0].mouth_open, 0.0);
        assert!(t.frames.iter().map(|f| f.mouth_open).fold(0.0, f32::max) > 0.6);
    }
}

#[test]
fn two_runs_with_the_same_seed_render_byte_identical_frames() {
    let request = json!({"script": "Same seed, same pixels. Every time!",
        "avatar": {"id": "lena", "expression": "friendly"},
        "dimension": {"width": 256, "height": 144}, "fps": 20, "seed": 99});
    let p = params(request.clone());
    let Some(first) = generator() else { return };
    let Some(second) = generator_with(3, 2) else {
        return;
    };
    let ta = first.timeline(&p).expect("timeline");
    let tb = second.timeline(&params(request)).expect("timeline");
    assert!(ta.frames == tb.frames);
    let all: Vec<usize> = (0..ta.frames.len()).collect();
    let a = first.still_frames(&p, &ta, &all).expect("frames");
    let b = second.still_frames(&p, &tb, &all).expect("frames");
    assert_eq!(a.len(), ta.frames.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(x == y, "frame {i} differs");
    }
    assert!(a.windows(2).any(|w| w[0] != w[1]), "the avatar moves");
    let other = params(json!({"script": "Same seed, same pixels. Every time!",
        "avatar": {"id": "lena", "expression": "friendly"},
        "dimension": {"width": 256, "height": 144}, "fps": 20, "seed": 100}));
    let tc = first.timeline(&other).expect("timeline");
    let c = first
        .still_frames(&other, &tc, &all[..all.len().min(tc.frames.len())])
        .expect("frames");
    assert!(
        a.iter().zip(&c).any(|(x, y)| x != y),
        "another seed moves differently"
    );
}

/// Renders `request` to a fresh file `name`: its timeline, the file, the outcome.
fn render_video(
    g: &Generator,
    request: Value,
    name: &str,
) -> (
    reelgen::render::timeline::script::Timeline,
    std::path::PathBuf,
    reelgen::render::pipeline::Outcome,
) {
    let timeline = g.timeline(&params(request.clone())).expect("timeline");
    let out = tmp(name);
    let outcome = g
        .run(
            &JobSpec {
                params: params(request),
                output: out.clone(),
                thumbnail: None,
                transcript: None,
                recording: None,
                live: false,
            },
            &AtomicBool::new(false),
            &mut |_| {},
            &mut |_| {},
        )
        .expect("generated");
    (timeline, out, outcome)
}

/// Per track of an MP4 (moov/trak): handler, timescale, duration and sample count.
pub(crate) fn mp4_tracks(data: &[u8]) -> Vec<(String, u32, u64, u32)> {
    fn boxes(data: &[u8]) -> Vec<(&str, &[u8])> {
        let mut out = Vec::new();
        let mut i = 0;
        while i + 8 <= data.len() {
            let size =
                u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]) as usize;
            let kind = std::str::from_utf8(&data[i + 4..i + 8]).unwrap_or("????");
            if size < 8 || i + size > data.len() {
                break;
            }
            out.push((kind, &data[i + 8..i + size]));
            i += size;
        }
        out
    }
    fn child<'a>(data: &'a [u8], kind: &str) -> Option<&'a [u8]> {
        boxes(data)
            .into_iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, b)| b)
    }
    let be32 = |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let Some(moov) = child(data, "moov") else {
        return Vec::new();
    };
    boxes(moov)
        .into_iter()
        .filter(|(k, _)| *k == "trak")
        .filter_map(|(_, trak)| {
            let mdia = child(trak, "mdia")?;
            let mdhd = child(mdia, "mdhd")?;
            let (timescale, duration) = if mdhd[0] == 1 {
                (
                    be32(mdhd, 20),
                    u64::from(be32(mdhd, 24)) << 32 | u64::from(be32(mdhd, 28)),
                )
            } else {
                (be32(mdhd, 12), u64::from(be32(mdhd, 16)))
            };
            let handler = String::from_utf8_lossy(&child(mdia, "hdlr")?[8..12]).to_string();
            let stsz = child(child(child(mdia, "minf")?, "stbl")?, "stsz")?;
            Some((handler, timescale, duration, be32(stsz, 8)))
        })
        .collect()
}

#[test]
fn the_mp4_has_exactly_the_timeline_s_frames_and_audio_as_long_as_the_speech() {
    let Some(g) = generator() else { return };
    let request = json!({"script": "Count my frames, please. Then measure my voice.",
        "dimension": {"width": 320, "height": 180}, "fps": 24, "quality": "draft", "seed": 4});
    let (timeline, out, outcome) = render_video(&g, request, "count.mp4");
    assert_eq!(outcome.frames, timeline.frames.len() as u64);
    let tracks = mp4_tracks(&std::fs::read(&out).expect("mp4"));
    let video = tracks
        .iter()
        .find(|t| t.0 == "vide")
        .expect("a video track");
    let audio = tracks
        .iter()
        .find(|t| t.0 == "soun")
        .expect("an audio track");
    assert_eq!(
        video.3 as usize,
        timeline.frames.len(),
        "every frame is in the file"
    );
    let video_s = video.2 as f64 / f64::from(video.1);
    assert!(
        (video_s - timeline.duration_s()).abs() <= 1.0 / 24.0 + 1e-6,
        "video {video_s} s vs timeline {} s",
        timeline.duration_s()
    );
    let speech_s = f64::from(timeline.speech.as_ref().expect("speech").duration_ms()) / 1000.0;
    let audio_s = audio.2 as f64 / f64::from(audio.1);
    // AAC frames are 1024 samples (~23 ms at 44.1 kHz): allow two.
    assert!(
        (audio_s - speech_s).abs() <= 0.05,
        "audio {audio_s} s vs speech {speech_s} s"
    );
    let info = discover(&out);
    assert!(info.contains("Frame rate: 24/1"), "{info}");
}

#[test]
fn every_listed_voice_speaks() {
    let Some(g) = generator() else { return };
    let cat = catalog();
    assert!(cat.voices.len() >= 4);
    for v in &cat.voices {
        let t = g
            .timeline(&params(
                json!({"script": "One, two, three.", "voice": {"id": v.id}}),
            ))
            .unwrap_or_else(|e| panic!("voice {}: {e}", v.id));
        let speech = t.speech.expect("speech");
        assert!(speech.phonemes.len() > 5, "voice {}", v.id);
        assert!(speech.duration_ms() > 300, "voice {}", v.id);
    }
}

#[test]
fn captions_burn_in_the_current_line_and_highlight_the_spoken_word() {
    let Some(g) = generator() else { return };
    let (w, h) = (640usize, 360usize);
    let request = |captions: bool| {
        params(
            json!({"script": "Captions follow every word. They highlight the one being spoken.",
            "dimension": {"width": w, "height": h}, "fps": 10, "seed": 6, "captions": captions}),
        )
    };
    let (with, without) = (request(true), request(false));
    let t = g.timeline(&with).expect("timeline");
    let track =
        reelgen::render::timeline::captions::CaptionTrack::build(&t.words, w as u32, h as u32)
            .expect("captions");
    let [bx, by, bw, bh] = track.area.map(|v| v as usize);
    let all: Vec<usize> = (0..t.frames.len()).collect();
    let a = g.still_frames(&with, &t, &all).expect("frames");
    let b = g.still_frames(&without, &t, &all).expect("frames");
    let inside = |i: usize| {
        let (x, y) = ((i / 4) % w, (i / 4) / w);
        x >= bx && x < bx + bw && y >= by && y < by + bh
    };
    let mut lit_frames = 0;
    let mut highlights = std::collections::HashSet::new();
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let shown = track.at(f64::from(t.frames[i].time));
        let outside_same = x
            .iter()
            .zip(y.iter())
            .enumerate()
            .all(|(k, (p, q))| inside(k) || p == q);
        assert!(
            outside_same,
            "frame {i}: captions changed pixels outside their box"
        );
        if shown.is_none() {
            continue;
        }
        assert!(x != y, "frame {i}: a caption line shows");
        // Highlight colour (amber, ~#ffd133) marks the spoken word.
        let lit: Vec<usize> = x
            .chunks_exact(4)
            .enumerate()
            .filter(|(_, p)| p[0] > 225 && (170..=235).contains(&p[1]) && p[2] < 110)
            .map(|(k, _)| k % w)
            .collect();
        if let Some(min) = lit.iter().min() {
            lit_frames += 1;
            highlights.insert(min / 8);
        }
    }
    assert!(
        lit_frames * 2 > a.len(),
        "{lit_frames} of {} frames highlight a word",
        a.len()
    );
    assert!(
        highlights.len() >= 3,
        "the highlight moves from word to word: {highlights:?}"
    );
}

#[test]
fn holding_head_tiles_until_they_move_by_their_step_stays_close_to_the_exact_pose() {
    use reelgen::render::media::i420::psnr;
    let Some(g) = generator() else { return };
    let p = params(
        json!({"script": "A nod, a turn, a breath: the head keeps moving while I talk.",
        "dimension": {"width": 640, "height": 360}, "fps": 30, "seed": 8}),
    );
    let t = g.timeline(&p).expect("timeline");
    let all: Vec<usize> = (0..t.frames.len()).collect();
    // In sequence (the job path): a tile of the head is recomposited only once the pose
    // has moved it by its step (a quarter pixel where sharp, more where smooth).
    let sequence = g.still_frames(&p, &t, &all).expect("frames");
    let (mut worst, mut worst_psnr) = (0.0f64, f64::INFINITY);
    let mut held = 0;
    for i in (0..all.len()).step_by(7) {
        // Alone, a frame is always composited at its exact pose.
        let exact = g.still_frames(&p, &t, &[i]).expect("frame").remove(0);
        let diff: u64 = exact
            .iter()
            .zip(&sequence[i])
            .map(|(a, b)| u64::from(a.abs_diff(*b)))
            .sum();
        let mean = diff as f64 / exact.len() as f64;
        if diff > 0 {
            held += 1;
        }
        worst = worst.max(mean);
        worst_psnr = worst_psnr.min(psnr(&exact, &sequence[i]));
    }
    assert!(held > 0, "some frames reuse an earlier composite");
    assert!(worst < 0.5, "mean difference per channel {worst}");
    assert!(
        worst_psnr >= 45.0,
        "worst PSNR against the exact pose {worst_psnr:.1} dB"
    );
}

#[test]
fn the_i420_kernel_matches_the_floating_point_reference_in_the_height_s_matrix() {
    use reelgen::render::gpu::i420::I420Converter;
    use reelgen::render::media::i420::reference;
    let Some(g) = generator() else { return };
    let p = params(json!({"script": "Colour check.", "voice": null,
        "dimension": {"width": 320, "height": 180}, "seed": 1}));
    let t = g.timeline(&p).expect("timeline");
    let frame = g.still_frames(&p, &t, &[0]).expect("frame").remove(0);
    let conv = I420Converter::new(g.gpu(), 320, 180).expect("converter");
    let got = conv.convert(g.gpu(), &frame).expect("converted");
    let want = reference(&frame, 320, 180);
    assert_eq!(got.len(), 320 * 180 * 3 / 2);
    let worst = got.iter().zip(&want).map(|(a, b)| a.abs_diff(*b)).max();
    assert!(worst <= Some(1), "off by {worst:?}");
    // White is Y 235, black Y 16, grey has neutral chroma.
    let flat = |c: u8| [c, c, c, 255].repeat(320 * 180);
    let white = conv.convert(g.gpu(), &flat(255)).expect("converted");
    let black = conv.convert(g.gpu(), &flat(0)).expect("converted");
    assert_eq!((white[0], black[0]), (235, 16));
    assert_eq!((white[320 * 180], white[320 * 180 + 160 * 90]), (128, 128));
    assert!(
        I420Converter::new(g.gpu(), 322, 180).is_err(),
        "width not a multiple of 8"
    );
}

#[test]
fn the_device_colour_path_makes_the_same_valid_video() {
    use reelgen::render::gpu::i420::ColorPath;
    // lavapipe measures the kernel slower than converting boxes on the CPU, so it would not
    // choose it; force it to check the path a real GPU may take.
    let Some(g) = generator() else { return };
    assert_eq!(g.color_path(), ColorPath::Boxes);
    let g = Generator::with_options(
        catalog(),
        GeneratorOptions {
            color_path: Some(ColorPath::Kernel),
            ..GeneratorOptions::default()
        },
    )
    .expect("generator");
    let request = json!({"script": "Converted on the device.",
        "dimension": {"width": 320, "height": 180}, "fps": 15, "quality": "draft", "seed": 2});
    let (timeline, out, _) = render_video(&g, request, "kernel.mp4");
    let tracks = mp4_tracks(&std::fs::read(&out).expect("mp4"));
    let video = tracks.iter().find(|t| t.0 == "vide").expect("video");
    assert_eq!(video.3 as usize, timeline.frames.len());
    let info = discover(&out);
    assert!(
        info.contains("Width: 320") && info.contains("H.264"),
        "{info}"
    );
}

#[test]
fn frames_born_i420_equal_whole_frame_conversions_and_match_videoconvert_above_45_db() {
    use reelgen::render::media::{self, i420};
    use reelgen::render::pipeline::Pixels;
    let Some(g) = generator() else { return };
    for (w, h, captions) in [(1280u32, 720u32, true), (640, 360, false)] {
        let p = params(
            json!({"script": "Born in I420: only the boxes that change are converted.",
            "dimension": {"width": w, "height": h}, "captions": captions, "seed": 3}),
        );
        let t = g.timeline(&p).expect("timeline");
        let at: Vec<usize> = (0..t.frames.len().min(75)).collect();
        let mut rgba = Vec::new();
        g.render_frames(&p, &t, &at, &mut |f| rgba.push(f.to_vec()))
            .expect("rgba frames");
        let mut born = Vec::new();
        g.frames(&p, &t, &at, Pixels::I420, &mut |f| born.push(f.to_vec()))
            .expect("i420 frames");
        assert_eq!(born.len(), at.len());
        // Pooled buffers come back holding earlier frames: converting only the patch boxes
        // must still give exactly the whole frame's conversion, every frame.
        for (i, (b, r)) in born.iter().zip(&rgba).enumerate() {
            assert!(
                *b == i420::from_rgba(r, w, h),
                "{w}x{h} frame {i} differs from its whole-frame conversion"
            );
        }
        // Against the frames as they were made before (RGBA through videoconvert).
        let (before, _) = media::videoconvert_i420(rgba, w, h).expect("videoconvert");
        assert_eq!(before.len(), born.len());
        let worst = born
            .iter()
            .zip(&before)
            .map(|(a, b)| i420::psnr(a, b))
            .fold(f64::INFINITY, f64::min);
        assert!(worst >= 45.0, "{w}x{h}: worst PSNR {worst:.1} dB");
    }
}

/// A short 320×180 draft video of `script`, written to `out`.
fn small_job(script: &str, out: &Path) -> JobSpec {
    JobSpec {
        params: params(json!({"script": script, "voice": null,
            "dimension": {"width": 320, "height": 180}, "fps": 15, "quality": "draft"})),
        output: out.to_path_buf(),
        thumbnail: None,
        transcript: None,
        recording: None,
        live: false,
    }
}

#[test]
fn the_device_opens_for_a_job_and_closes_after_the_idle_period() {
    use reelgen::videos::device::OnDemand;
    if generator().is_none() {
        return;
    }
    let device = OnDemand::new(|| Generator::new(catalog()), Duration::from_millis(200));
    assert!(!device.is_open(), "nothing is opened before a job asks");
    let wait_closed = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while device.is_open() {
            assert!(
                Instant::now() < deadline,
                "{what}: still open after 60 s idle"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let lease = device.acquire().expect("opens");
    let again = device.acquire().expect("shares the open device");
    assert_eq!(device.times_opened(), 1, "two holders, one device");
    drop(lease);
    assert!(device.is_open(), "still held by the second lease");
    drop(again);
    wait_closed("after the last lease");
    // A job after the close opens it again and renders a whole video.
    let out = tmp("reopened.mp4");
    let spec = small_job("Opened again.", &out);
    let outcome = device
        .spawn_with(spec, Arc::default(), |_| {}, |_| {})
        .join()
        .expect("the job renders on the reopened device");
    assert!(outcome.frames > 0 && out.exists());
    assert_eq!(device.times_opened(), 2);
    wait_closed("after the job");
}

#[test]
fn dropping_a_generator_destroys_its_device_before_it_returns() {
    // The scheduler thread owns the device; it must be gone once `drop` returns, or a
    // process exiting right after (the CLI, the bench) races the driver's own teardown.
    if generator().is_none() {
        return;
    }
    let g = Generator::new(catalog()).expect("a second generator");
    let out = tmp("dropped.mp4");
    let spec = small_job("Then it closes.", &out);
    let outcome = g
        .run(&spec, &AtomicBool::new(false), &mut |_| {}, &mut |_| {})
        .expect("renders");
    assert!(outcome.frames > 0 && out.exists());
    // Threads named `reelgen-gpu`: this generator's and the shared one's.
    let scheduler_threads = || {
        std::fs::read_dir("/proc/self/task")
            .expect("/proc/self/task")
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.trim() == "reelgen-gpu")
            .count()
    };
    let before = scheduler_threads();
    assert!(before >= 1, "the scheduler thread runs");
    drop(g);
    assert_eq!(
        scheduler_threads(),
        before - 1,
        "the scheduler thread (and the device it owns) outlived the generator's drop"
    );
}

#[test]
fn eyes_and_mouth_drawn_only_where_they_can_touch_give_the_whole_boxes_pixels() {
    let Some(g) = generator() else { return };
    let whole = Generator::with_options(
        catalog(),
        GeneratorOptions {
            whole_feature_boxes: true,
            ..GeneratorOptions::default()
        },
    )
    .expect("generator");
    // Small frames (wide anti-aliasing reach), a smile, a stern face with the crease between
    // the brows; wide-open vowels and closed lips; a moving head.
    for (w, h, avatar, expression) in [
        (320u32, 180u32, "ava", "friendly"),
        (640, 360, "marcus", "serious"),
        (1280, 720, "lena", "neutral"),
    ] {
        let p = params(
            json!({"script": "Oh wow, a big open mouth! Then a quiet smile, and mmm.",
            "avatar": {"id": avatar, "expression": expression},
            "dimension": {"width": w, "height": h}, "fps": 30, "seed": 5}),
        );
        let t = g.timeline(&p).expect("timeline");
        let all: Vec<usize> = (0..t.frames.len()).collect();
        let tight = g.still_frames(&p, &t, &all).expect("frames");
        let reference = whole.still_frames(&p, &t, &all).expect("frames");
        assert_eq!(tight.len(), reference.len());
        for (i, (a, b)) in tight.iter().zip(&reference).enumerate() {
            assert!(a == b, "{w}x{h} {expression}: frame {i} differs");
        }
    }
}
