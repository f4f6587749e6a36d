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

#[link(name = "espeak-ng")]
unsafe extern "C" {
    fn espeak_Initialize(
        output: c_int,
        buflength: c_int,
        path: *const c_char,
        options: c_int,
    ) -> c_int;
    fn espeak_SetSynthCallback(cb: SynthCallback);
    fn espeak_SetVoiceByName(name: *const c_char) -> c_int;
    fn espeak_SetParameter(parameter: c_int, value: c_int, relative: c_int) -> c_int;
    fn espeak_Synth(
        text: *const c_void,
        size: usize,
        position: c_uint,
        position_type: c_int,
        end_position: c_uint,
        flags: c_uint,
        unique_identifier: *mut c_uint,
        user_data: *mut c_void,
    ) -> c_int;
    fn espeak_Synchronize() -> c_int;
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

/// Set once libespeak-ng is initialised: its output sample rate.
struct State {
    sample_rate: u32,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);
/// Filled by the callback; only touched while `STATE` is locked by `synthesize`.
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
    let mut state = STATE.lock().unwrap_or_else(|p| p.into_inner());
    if state.is_none() {
        // SAFETY: plain C calls; the callback is a `'static` function.
        let rate = unsafe {
            espeak_Initialize(
                AUDIO_OUTPUT_SYNCHRONOUS,
                500,
                std::ptr::null(),
                INITIALIZE_PHONEME_EVENTS | INITIALIZE_DONT_EXIT,
            )
        };
        if rate <= 0 {
            return Err(EspeakError::Init);
        }
        unsafe { espeak_SetSynthCallback(on_synth) };
        *state = Some(State {
            sample_rate: rate as u32,
        });
    }
    let Some(st) = state.as_ref() else {
        return Err(EspeakError::Init);
    };
    // SAFETY: valid NUL-terminated strings; espeak copies what it needs.
    if unsafe { espeak_SetVoiceByName(cvoice.as_ptr()) } != 0 {
        return Err(EspeakError::Voice(voice.to_string()));
    }
    unsafe {
        espeak_SetParameter(PARAM_RATE, rate.clamp(80, 450) as c_int, 0);
        espeak_SetParameter(PARAM_PITCH, pitch.min(100) as c_int, 0);
    }
    *SINK.lock().unwrap_or_else(|p| p.into_inner()) = Some(Synthesis {
        sample_rate: st.sample_rate,
        ..Synthesis::default()
    });
    let bytes = ctext.as_bytes_with_nul();
    // Same noise source for the same text. (espeak-ng 1.51 still jitters by about a
    // millisecond between utterances: its pitch flutter state persists in the process.)
    unsafe { srand(0x5EED) };
    // SAFETY: `bytes` outlives the call; synchronous mode returns after all callbacks ran.
    let code = unsafe {
        espeak_Synth(
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
    unsafe { espeak_Synchronize() };
    let out = SINK
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .unwrap_or_default();
    if code != 0 {
        return Err(EspeakError::Synth(code));
    }
    Ok(out)
}
