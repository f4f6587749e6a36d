//! A small hand-written binding to libespeak-ng 1.51 (`speak_lib.h`), synchronous mode with
//! phoneme events: one call turns text into 16-bit mono PCM plus the phonemes and words with
//! their positions in the audio. libespeak-ng keeps one global state and one global callback,
//! so every use goes through [`synthesize`], which holds a process-wide lock.
#![allow(unsafe_code)]

use std::ffi::{CString, c_char, c_int, c_short, c_uint, c_void};
use std::sync::Mutex;

const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
const INITIALIZE_PHONEME_EVENTS: c_int = 0x0001;
const INITIALIZE_DONT_EXIT: c_int = 0x8000;
const CHARS_UTF8: c_uint = 1;
const ENDPAUSE: c_uint = 0x1000;
const POS_CHARACTER: c_int = 1;
const PARAM_RATE: c_int = 1;
const PARAM_PITCH: c_int = 3;

const EVENT_LIST_TERMINATED: c_int = 0;
const EVENT_WORD: c_int = 1;
const EVENT_SENTENCE: c_int = 2;
const EVENT_PHONEME: c_int = 7;

#[repr(C)]
#[derive(Clone, Copy)]
union EventId {
    number: c_int,
    name: *const c_char,
    string: [c_char; 8],
}

#[repr(C)]
struct EspeakEvent {
    kind: c_int,
    unique_identifier: c_uint,
    text_position: c_int,
    length: c_int,
    audio_position: c_int,
    sample: c_int,
    user_data: *mut c_void,
    id: EventId,
}

type SynthCallback = unsafe extern "C" fn(*mut c_short, c_int, *mut EspeakEvent) -> c_int;

type InitializeFn = unsafe extern "C" fn(c_int, c_int, *const c_char, c_int) -> c_int;
type SetSynthCallbackFn = unsafe extern "C" fn(SynthCallback);
type SetVoiceByNameFn = unsafe extern "C" fn(*const c_char) -> c_int;
type SetParameterFn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
type SynthFn = unsafe extern "C" fn(
    *const c_void,
    usize,
    c_uint,
    c_int,
    c_uint,
    c_uint,
    *mut c_uint,
    *mut c_void,
) -> c_int;
type NoArgFn = unsafe extern "C" fn() -> c_int;

const RTLD_NOW: c_int = 0x2;
const RTLD_LOCAL: c_int = 0;
const RTLD_NODELETE: c_int = 0x1000;
const LIBRARY: &str = "libespeak-ng.so.1";
/// Its dependencies, held open for the life of the process so that unloading espeak itself
/// never unloads (and re-initialises) the audio libraries under it.
const DEPENDENCIES: [&str; 2] = ["libpcaudio.so.0", "libsonic.so.0"];

unsafe extern "C" {
    fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlclose(handle: *mut c_void) -> c_int;
}

/// libespeak-ng loaded for one utterance. espeak-ng 1.51 keeps synthesis state in globals
/// (pitch flutter, filters), so the same text spoken twice in one process comes out with
/// phonemes up to ~20 ms apart. A fresh copy of the library per utterance (loaded,
/// initialised, terminated and unloaded: ~10 ms) makes every utterance start from the same
/// state, so the same input gives the same samples and timings in any process, in any order.
struct Library {
    handle: *mut c_void,
}

impl Library {
    fn open() -> Result<Self, EspeakError> {
        static DEPS: std::sync::Once = std::sync::Once::new();
        DEPS.call_once(|| {
            for dep in DEPENDENCIES {
                if let Ok(name) = CString::new(dep) {
                    // SAFETY: a plain dlopen; a missing library only means espeak loads it.
                    unsafe { dlopen(name.as_ptr(), RTLD_NOW | RTLD_NODELETE) };
                }
            }
        });
        let name = CString::new(LIBRARY).map_err(|_| EspeakError::Init)?;
        // SAFETY: loading a shared library by name; failure is a null handle.
        let handle = unsafe { dlopen(name.as_ptr(), RTLD_NOW | RTLD_LOCAL) };
        if handle.is_null() {
            return Err(EspeakError::Init);
        }
        Ok(Self { handle })
    }

    /// The address of `symbol` as a function of type `F` (a `fn` pointer type).
    ///
    /// # Safety
    /// `F` must be the exact C signature of `symbol`.
    unsafe fn get<F: Copy>(&self, symbol: &str) -> Result<F, EspeakError> {
        let name = CString::new(symbol).map_err(|_| EspeakError::Init)?;
        // SAFETY: `handle` is a live dlopen handle.
        let ptr = unsafe { dlsym(self.handle, name.as_ptr()) };
        if ptr.is_null() {
            return Err(EspeakError::Init);
        }
        debug_assert_eq!(size_of::<F>(), size_of::<*mut c_void>());
        // SAFETY: the caller names the symbol's real signature; fn pointers are pointer-sized.
        Ok(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&ptr) })
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        // SAFETY: `handle` came from dlopen and nothing refers into the library any more.
        unsafe {
            if let Ok(terminate) = self.get::<NoArgFn>("espeak_Terminate") {
                terminate();
            }
            dlclose(self.handle);
        }
    }
}

unsafe extern "C" {
    /// libc's generator, which espeak-ng uses for its noise sources.
    fn srand(seed: c_uint);
}

#[derive(Debug, thiserror::Error)]
pub enum EspeakError {
    #[error("espeak-ng could not be initialised (is espeak-ng-data installed?)")]
    Init,
    #[error("espeak-ng has no voice {0:?}")]
    Voice(String),
    #[error("espeak-ng failed to synthesise (code {0})")]
    Synth(i32),
    #[error("text contains a NUL byte")]
    Nul,
}

/// What espeak reported while speaking.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A phoneme (espeak mnemonic, e.g. `h`, `@`, `oU`; empty or `_` names are pauses).
    Phoneme {
        name: String,
        at_ms: u32,
    },
    /// A word: its character offset (1-based, as espeak counts) and length in the text.
    Word {
        text_position: u32,
        length: u32,
        at_ms: u32,
    },
    Sentence {
        at_ms: u32,
    },
}

#[derive(Debug, Default)]
pub struct Synthesis {
    pub sample_rate: u32,
    pub samples: Vec<i16>,
    pub events: Vec<Event>,
}

/// Serialises every use of libespeak-ng (one global state, one global callback).
static LOCK: Mutex<()> = Mutex::new(());
static SINK: Mutex<Option<Synthesis>> = Mutex::new(None);

unsafe extern "C" fn on_synth(
    wav: *mut c_short,
    numsamples: c_int,
    events: *mut EspeakEvent,
) -> c_int {
    let Ok(mut guard) = SINK.lock() else { return 1 };
    let Some(sink) = guard.as_mut() else { return 1 };
    if !wav.is_null() && numsamples > 0 {
        // SAFETY: espeak hands us `numsamples` valid samples for the duration of the call.
        let slice = unsafe { std::slice::from_raw_parts(wav, numsamples as usize) };
        sink.samples.extend_from_slice(slice);
    }
    let mut ev = events;
    // SAFETY: the event list is terminated by an event of type LIST_TERMINATED.
    while !ev.is_null() && unsafe { (*ev).kind } != EVENT_LIST_TERMINATED {
        let e = unsafe { &*ev };
        let at_ms = u32::try_from(e.audio_position).unwrap_or(0);
        match e.kind {
            EVENT_PHONEME => {
                // SAFETY: for phoneme events `id.string` holds up to 8 bytes, NUL-terminated
                // unless all 8 are used.
                let raw = unsafe { e.id.string };
                let bytes: Vec<u8> = raw
                    .iter()
                    .take_while(|c| **c != 0)
                    .map(|c| *c as u8)
                    .collect();
                sink.events.push(Event::Phoneme {
                    name: String::from_utf8_lossy(&bytes).into_owned(),
                    at_ms,
                });
            }
            EVENT_WORD => sink.events.push(Event::Word {
                text_position: u32::try_from(e.text_position).unwrap_or(0),
                length: u32::try_from(e.length).unwrap_or(0),
                at_ms,
            }),
            EVENT_SENTENCE => sink.events.push(Event::Sentence { at_ms }),
            _ => {}
        }
        ev = unsafe { ev.add(1) };
    }
    0
}

/// Speaks `text` with espeak voice `voice` (e.g. `en-us+f3`) at `rate` words per minute and
/// base pitch `pitch` (0–100, 50 normal).
pub fn synthesize(
    text: &str,
    voice: &str,
    rate: u32,
    pitch: u32,
) -> Result<Synthesis, EspeakError> {
    let ctext = CString::new(text).map_err(|_| EspeakError::Nul)?;
    let cvoice = CString::new(voice).map_err(|_| EspeakError::Nul)?;
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let lib = Library::open()?;
    // SAFETY: each type is the signature `speak_lib.h` declares for that symbol.
    let (initialize, set_callback, set_voice, set_parameter, synth, synchronize) = unsafe {
        (
            lib.get::<InitializeFn>("espeak_Initialize")?,
            lib.get::<SetSynthCallbackFn>("espeak_SetSynthCallback")?,
            lib.get::<SetVoiceByNameFn>("espeak_SetVoiceByName")?,
            lib.get::<SetParameterFn>("espeak_SetParameter")?,
            lib.get::<SynthFn>("espeak_Synth")?,
            lib.get::<NoArgFn>("espeak_Synchronize")?,
        )
    };
    // SAFETY: plain C calls on the freshly loaded library; the callback is a `'static` fn.
    let sample_rate = unsafe {
        initialize(
            AUDIO_OUTPUT_SYNCHRONOUS,
            500,
            std::ptr::null(),
            INITIALIZE_PHONEME_EVENTS | INITIALIZE_DONT_EXIT,
        )
    };
    if sample_rate <= 0 {
        return Err(EspeakError::Init);
    }
    unsafe { set_callback(on_synth) };
    // SAFETY: valid NUL-terminated strings; espeak copies what it needs.
    if unsafe { set_voice(cvoice.as_ptr()) } != 0 {
        return Err(EspeakError::Voice(voice.to_string()));
    }
    unsafe {
        set_parameter(PARAM_RATE, rate.clamp(80, 450) as c_int, 0);
        set_parameter(PARAM_PITCH, pitch.min(100) as c_int, 0);
    }
    *SINK.lock().unwrap_or_else(|p| p.into_inner()) = Some(Synthesis {
        sample_rate: sample_rate as u32,
        ..Synthesis::default()
    });
    let bytes = ctext.as_bytes_with_nul();
    // espeak-ng 1.51 draws its noise sources from libc's generator: same seed, same noise.
    unsafe { srand(0x5EED) };
    // SAFETY: `bytes` outlives the call; synchronous mode returns after all callbacks ran.
    let code = unsafe {
        synth(
            bytes.as_ptr().cast(),
            bytes.len(),
            0,
            POS_CHARACTER,
            0,
            CHARS_UTF8 | ENDPAUSE,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    unsafe { synchronize() };
    let out = SINK
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .unwrap_or_default();
    drop(lib);
    if code != 0 {
        return Err(EspeakError::Synth(code));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_gives_the_same_samples_and_timings_whatever_came_before() {
        let text = "Hello world. Open your mouth wide, and say it again!";
        let first = synthesize(text, "en-us+f3", 175, 50).expect("espeak-ng");
        let other = synthesize("Something else entirely: 42 numbers.", "en-us+m3", 140, 30)
            .expect("espeak-ng");
        let again = synthesize(text, "en-us+f3", 175, 50).expect("espeak-ng");
        assert!(!first.samples.is_empty() && first.events.len() > 10);
        assert_ne!(first.samples.len(), other.samples.len());
        assert_eq!(first.events, again.events);
        assert!(first.samples == again.samples, "identical PCM");
    }
}
