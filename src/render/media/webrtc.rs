//! A WebRTC peer of a live session, on GStreamer's `webrtcbin` (libnice for ICE, DTLS-SRTP,
//! SCTP data channels): [`WebRtcPeer::answer`] takes the client's SDP offer and returns the
//! answer with every host candidate in it (non-trickle: one request, one reply), then the
//! peer is an [`Outlet`] like any other. The video codec is the client's: H.264
//! (constrained baseline, packetization-mode 1) when offered, else VP8; the sound is Opus.
//! The RTP payload types are the ones the offer gave those codecs. A data channel the client
//! opened carries the session's events. Chosen over a sans-IO stack (str0m) because the
//! encoders, payloaders and transport are all GStreamer elements already on the machine
//! (Debian's plugins-bad and libnice), so a frame goes appsrc → encoder → RTP → socket on
//! GStreamer's own threads with no hand-written packet loop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_sdp as gst_sdp;
use gstreamer_webrtc as gst_webrtc;

use super::live::{LiveFormat, LiveInput, Outlet, SharedFrame, launch, live_x264};
use super::*;

/// How long a peer may take to connect before the session gives up on it.
const CONNECT_WITHIN: Duration = Duration::from_secs(30);
/// How long gathering the answer's candidates may take.
const GATHER_WITHIN: Duration = Duration::from_secs(5);

/// Why an offer was refused: the client's fault (400) or ours.
#[derive(Debug, thiserror::Error)]
pub enum WebRtcError {
    #[error("the offer: {0}")]
    BadOffer(String),
    #[error(transparent)]
    Media(#[from] MediaError),
}

/// The video codec both sides have, with the offer's payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264(u32),
    Vp8(u32),
}

/// What the offer asks for: its video codec and Opus payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub video: VideoCodec,
    pub audio: u32,
}

/// Reads the codecs from an offer: the first H.264 format with packetization-mode 1 (a
/// constrained-baseline one preferred), else the first VP8; Opus for the sound.
pub fn negotiate(sdp: &gst_sdp::SDPMessageRef) -> Result<Negotiated, WebRtcError> {
    let mut h264: Vec<(u32, bool)> = Vec::new();
    let mut vp8 = None;
    let mut opus = None;
    for media in sdp.medias() {
        let kind = media.media().unwrap_or_default();
        let mut fmtp = std::collections::HashMap::new();
        let mut rtpmap = Vec::new();
        for a in media.attributes() {
            let Some((pt, rest)) = a.value().and_then(|v| v.split_once(' ')) else {
                continue;
            };
            let Ok(pt) = pt.parse::<u32>() else { continue };
            match a.key() {
                "rtpmap" => rtpmap.push((pt, rest.to_ascii_lowercase())),
                "fmtp" => {
                    fmtp.insert(pt, rest.to_ascii_lowercase());
                }
                _ => {}
            }
        }
        for (pt, codec) in rtpmap {
            let params = fmtp.get(&pt).map(String::as_str).unwrap_or_default();
            match kind {
                "video"
                    if codec.starts_with("h264/90000")
                        && params.contains("packetization-mode=1") =>
                {
                    h264.push((pt, params.contains("profile-level-id=42e0")));
                }
                "video" if codec.starts_with("vp8/90000") => {
                    vp8 = vp8.or(Some(pt));
                }
                "audio" if codec.starts_with("opus/48000") => opus = opus.or(Some(pt)),
                _ => {}
            }
        }
    }
    let video = h264
        .iter()
        .find(|(_, baseline)| *baseline)
        .or(h264.first())
        .map(|(pt, _)| VideoCodec::H264(*pt))
        .or(vp8.map(VideoCodec::Vp8))
        .ok_or_else(|| {
            WebRtcError::BadOffer(
                "it offers no H.264 (packetization-mode=1) or VP8 video to receive".into(),
            )
        })?;
    let audio =
        opus.ok_or_else(|| WebRtcError::BadOffer("it offers no Opus audio to receive".into()))?;
    Ok(Negotiated { video, audio })
}

/// ICE servers for `webrtcbin`: `stun://host:port`, `turn://user:pass@host:port` (or
/// `turns://`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceServers(pub Vec<String>);

impl IceServers {
    /// The same servers as a browser's `RTCPeerConnection` takes them (`iceServers`).
    pub fn browser_urls(&self) -> Vec<serde_json::Value> {
        self.0
            .iter()
            .filter_map(|s| {
                let (scheme, rest) = s.split_once("://")?;
                let (auth, host) = match rest.rsplit_once('@') {
                    Some((auth, host)) => (Some(auth), host),
                    None => (None, rest),
                };
                let mut v = serde_json::json!({ "urls": format!("{scheme}:{host}") });
                if let Some((user, pass)) = auth.and_then(|a| a.split_once(':')) {
                    v["username"] = user.into();
                    v["credential"] = pass.into();
                }
                Some(v)
            })
            .collect()
    }
}

pub struct WebRtcPeer {
    input: LiveInput,
    webrtc: gst::Element,
    channel: Arc<Mutex<Option<gst_webrtc::WebRTCDataChannel>>>,
    connected: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
    created: Instant,
    pub negotiated: Negotiated,
}

impl WebRtcPeer {
    /// Answers `offer` (the SDP text): builds the peer's pipeline for the codecs it offers,
    /// and returns the peer and the answer's SDP text.
    pub fn answer(
        offer: &str,
        format: LiveFormat,
        ice: &IceServers,
    ) -> Result<(Self, String), WebRtcError> {
        init()?;
        let sdp = gst_sdp::SDPMessage::parse_buffer(offer.as_bytes())
            .map_err(|e| WebRtcError::BadOffer(format!("not SDP: {e}")))?;
        if sdp.medias_len() == 0 {
            return Err(WebRtcError::BadOffer("it has no media".into()));
        }
        let negotiated = negotiate(&sdp)?;
        let video = match negotiated.video {
            VideoCodec::H264(pt) => format!(
                "{enc} ! video/x-h264,profile=constrained-baseline \
                 ! rtph264pay config-interval=-1 aggregate-mode=zero-latency pt={pt} \
                 ! application/x-rtp,media=video,encoding-name=H264,payload={pt},clock-rate=90000",
                enc = live_x264(format.key_interval())
            ),
            VideoCodec::Vp8(pt) => format!(
                "vp8enc name=enc deadline=1 cpu-used=8 end-usage=cbr target-bitrate=1500000 \
                   keyframe-max-dist={key} error-resilient=partitions lag-in-frames=0 threads=2 \
                 ! rtpvp8pay pt={pt} picture-id-mode=15-bit \
                 ! application/x-rtp,media=video,encoding-name=VP8,payload={pt},clock-rate=90000",
                key = format.key_interval()
            ),
        };
        let desc = format!(
            "webrtcbin name=w bundle-policy=max-bundle \
             appsrc name=v is-live=true format=time block=false max-bytes={max} caps={vcaps} \
             ! queue max-size-buffers=4 ! {video} ! w. \
             appsrc name=a is-live=true format=time block=false caps={acaps} \
             ! audioconvert ! audioresample ! opusenc frame-size=20 \
             ! rtpopuspay pt={apt} \
             ! application/x-rtp,media=audio,encoding-name=OPUS,payload={apt},clock-rate=48000 ! w.",
            max = 4 * super::i420::frame_bytes(format.width, format.height),
            vcaps = format.video_caps(),
            acaps = LiveFormat::audio_caps(),
            apt = negotiated.audio,
        );
        let pipeline = launch(&desc)?;
        let webrtc = pipeline
            .by_name("w")
            .ok_or_else(|| MediaError::Pipeline("webrtcbin missing".into()))?;
        for server in &ice.0 {
            if server.starts_with("stun://") {
                webrtc.set_property_from_str("stun-server", server);
            } else if server.starts_with("turn://") || server.starts_with("turns://") {
                let _ = webrtc.emit_by_name::<bool>("add-turn-server", &[server]);
            }
        }
        let input = LiveInput::new(pipeline.clone(), format.fps)?;
        let peer = Self {
            input,
            webrtc: webrtc.clone(),
            channel: Arc::default(),
            connected: Arc::default(),
            failed: Arc::default(),
            created: Instant::now(),
            negotiated,
        };
        peer.watch(&pipeline);
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| MediaError::Pipeline(format!("webrtcbin would not start: {e}")))?;
        // We only send: every transceiver the pads made answers `sendonly`.
        let mut i = 0;
        while let Some(t) = webrtc
            .emit_by_name::<Option<gst_webrtc::WebRTCRTPTransceiver>>("get-transceiver", &[&i])
        {
            t.set_property(
                "direction",
                gst_webrtc::WebRTCRTPTransceiverDirection::Sendonly,
            );
            i += 1;
        }
        let offer =
            gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Offer, sdp);
        let promise = gst::Promise::new();
        webrtc.emit_by_name::<()>("set-remote-description", &[&offer, &Some(promise.clone())]);
        wait(&promise, "set-remote-description")?;
        let promise = gst::Promise::new();
        webrtc.emit_by_name::<()>("create-answer", &[&None::<gst::Structure>, &promise]);
        let reply = wait(&promise, "create-answer")?;
        let answer = reply
            .and_then(|r| r.get::<gst_webrtc::WebRTCSessionDescription>("answer").ok())
            .ok_or_else(|| {
                WebRtcError::BadOffer("no answer could be made for it (no common media)".into())
            })?;
        // Non-trickle: the answer carries the candidates, so gathering must finish first; the
        // state change is heard, not polled.
        let (gathered, done) = std::sync::mpsc::sync_channel::<()>(1);
        let watch = webrtc.connect_notify(Some("ice-gathering-state"), move |w, _| {
            if w.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
                == gst_webrtc::WebRTCICEGatheringState::Complete
            {
                let _ = gathered.try_send(());
            }
        });
        let promise = gst::Promise::new();
        webrtc.emit_by_name::<()>("set-local-description", &[&answer, &Some(promise.clone())]);
        wait(&promise, "set-local-description")?;
        if webrtc.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
            != gst_webrtc::WebRTCICEGatheringState::Complete
        {
            // Past the deadline the answer goes with the candidates found so far.
            let _ = done.recv_timeout(GATHER_WITHIN);
        }
        webrtc.disconnect(watch);
        let local = webrtc
            .property::<Option<gst_webrtc::WebRTCSessionDescription>>("local-description")
            .ok_or_else(|| MediaError::Pipeline("webrtcbin kept no local description".into()))?;
        let text = local
            .sdp()
            .as_text()
            .map_err(|e| MediaError::Pipeline(e.to_string()))?;
        Ok((peer, text))
    }

    /// Follows the connection: connected (a key frame is asked for at once, so the client
    /// need not wait for the next one), failed or closed (the session drops the peer), and
    /// the client's data channel.
    fn watch(&self, pipeline: &gst::Pipeline) {
        let (connected, failed) = (self.connected.clone(), self.failed.clone());
        let encoder = pipeline.by_name("enc");
        self.webrtc
            .connect_notify(Some("connection-state"), move |w, _| {
                use gst_webrtc::WebRTCPeerConnectionState as S;
                match w.property::<S>("connection-state") {
                    S::Connected => {
                        connected.store(true, Ordering::Relaxed);
                        if let Some(pad) = encoder.as_ref().and_then(|e| e.static_pad("src")) {
                            let key = gst::Structure::builder("GstForceKeyUnit")
                                .field("all-headers", true)
                                .build();
                            pad.send_event(gst::event::CustomUpstream::new(key));
                        }
                    }
                    S::Failed | S::Closed => failed.store(true, Ordering::Relaxed),
                    _ => {}
                }
            });
        let channel = self.channel.clone();
        self.webrtc
            .connect("on-data-channel", false, move |values| {
                if let Some(c) = values
                    .get(1)
                    .and_then(|v| v.get::<gst_webrtc::WebRTCDataChannel>().ok())
                    && let Ok(mut slot) = channel.lock()
                {
                    *slot = Some(c);
                }
                None
            });
    }

    /// Whether the client has connected.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

/// Waits for a promise of `webrtcbin`; its reply, or why it failed.
fn wait(promise: &gst::Promise, what: &str) -> Result<Option<gst::Structure>, WebRtcError> {
    match promise.wait() {
        gst::PromiseResult::Replied => {
            let reply = promise.get_reply().map(|r| r.to_owned());
            if let Some(err) = reply
                .as_ref()
                .and_then(|r| r.get::<glib::Error>("error").ok())
            {
                return Err(WebRtcError::BadOffer(format!("{what}: {err}")));
            }
            Ok(reply)
        }
        other => Err(WebRtcError::Media(MediaError::Pipeline(format!(
            "{what} did not complete ({other:?})"
        )))),
    }
}

impl Outlet for WebRtcPeer {
    fn push(
        &mut self,
        frame: Option<&SharedFrame>,
        audio: &[i16],
        index: u64,
    ) -> Result<(), MediaError> {
        self.input.push(frame, audio, index)
    }

    fn message(&mut self, json: &str) {
        let channel = self.channel.lock().ok().and_then(|c| c.clone());
        if let Some(c) = channel
            && c.ready_state() == gst_webrtc::WebRTCDataChannelState::Open
        {
            let _ = c.send_string_full(Some(json));
        }
    }

    fn closed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
            || (!self.connected() && self.created.elapsed() > CONNECT_WITHIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(video: &str, audio: &str) -> gst_sdp::SDPMessage {
        let text = format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n{video}{audio}");
        gst_sdp::SDPMessage::parse_buffer(text.as_bytes()).expect("sdp")
    }

    const OPUS: &str = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";

    #[test]
    fn the_offer_decides_the_codec_and_its_payload_types() {
        let _ = init();
        let both = "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98\r\na=rtpmap:96 VP8/90000\r\n\
            a=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=1;profile-level-id=42001f\r\n\
            a=rtpmap:98 H264/90000\r\na=fmtp:98 packetization-mode=1;profile-level-id=42e01f\r\n";
        let n = negotiate(&offer(both, OPUS)).expect("negotiated");
        assert_eq!(
            n.video,
            VideoCodec::H264(98),
            "constrained baseline preferred"
        );
        assert_eq!(n.audio, 111);
        let vp8 = "m=video 9 UDP/TLS/RTP/SAVPF 100 101\r\na=rtpmap:100 VP8/90000\r\n\
            a=rtpmap:101 H264/90000\r\na=fmtp:101 packetization-mode=0\r\n";
        let n = negotiate(&offer(vp8, OPUS)).expect("negotiated");
        assert_eq!(
            n.video,
            VideoCodec::Vp8(100),
            "H.264 without mode 1 is not usable"
        );
        assert!(matches!(
            negotiate(&offer("", OPUS)),
            Err(WebRtcError::BadOffer(_))
        ));
        let no_opus = "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n";
        assert!(matches!(
            negotiate(&offer(vp8, no_opus)),
            Err(WebRtcError::BadOffer(_))
        ));
    }

    #[test]
    fn ice_servers_are_given_to_browsers_in_their_own_form() {
        let ice = IceServers(vec![
            "stun://stun.example.com:3478".into(),
            "turn://alice:secret@turn.example.com:3478".into(),
        ]);
        assert_eq!(
            ice.browser_urls(),
            vec![
                serde_json::json!({"urls": "stun:stun.example.com:3478"}),
                serde_json::json!({"urls": "turn:turn.example.com:3478", "username": "alice", "credential": "secret"}),
            ]
        );
    }
}
