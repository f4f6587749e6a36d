//! The live preview: the fragmented muxer's output cut into an init segment and `moof`
//! fragments (a fragment starts with a buffer whose first box is `moof`), announced with the
//! RFC 6381 codec string GStreamer's pbutils derives from the negotiated caps.

use std::sync::mpsc;

use gstreamer_app as gst_app;

use super::*;

/// Reads the fragmented muxer's output and cuts it into init segment and fragments.
pub(super) fn spawn_fragmenter(sink: gst_app::AppSink, bin: gst::Bin) -> mpsc::Receiver<LiveChunk> {
    let (tx, rx) = mpsc::sync_channel::<LiveChunk>(64);
    std::thread::Builder::new()
        .name("reelgen-fmp4".into())
        .spawn(move || {
            crate::render::priority::lower_this_thread();
            let mut init: Vec<u8> = Vec::new();
            let mut current: Vec<u8> = Vec::new();
            let mut sent_init = false;
            while let Ok(sample) = sink.pull_sample() {
                let Some(buf) = sample.buffer() else { continue };
                let Ok(map) = buf.map_readable() else {
                    continue;
                };
                let data = map.as_slice();
                let starts_moof = data.len() >= 8 && &data[4..8] == b"moof";
                if starts_moof {
                    if !sent_init {
                        sent_init = true;
                        let mime = codec_mime(&stream_caps(&bin));
                        if tx
                            .send(LiveChunk::Init {
                                data: std::mem::take(&mut init),
                                mime,
                            })
                            .is_err()
                        {
                            return;
                        }
                    } else if !current.is_empty()
                        && tx
                            .send(LiveChunk::Fragment(std::mem::take(&mut current)))
                            .is_err()
                    {
                        return;
                    }
                    current.extend_from_slice(data);
                } else if !sent_init {
                    init.extend_from_slice(data);
                } else {
                    current.extend_from_slice(data);
                }
            }
            if !current.is_empty() {
                let _ = tx.send(LiveChunk::Fragment(current));
            }
        })
        .ok();
    rx
}

/// The encoded streams' caps, as negotiated into the tees before the muxers (`vt` for
/// H.264, `at` for AAC when there is a voice).
fn stream_caps(bin: &gst::Bin) -> Vec<gst::Caps> {
    ["vt", "at"]
        .iter()
        .filter_map(|name| bin.by_name(name)?.static_pad("sink")?.current_caps())
        .collect()
}

/// `video/mp4; codecs="avc1.PPCCLL[, mp4a.40.2]"` for streams of these caps (the codec
/// strings from pbutils' `codec_utils_caps_get_mime_codec`).
pub fn codec_mime(streams: &[gst::Caps]) -> String {
    let codecs: Vec<String> = streams
        .iter()
        .filter_map(|caps| {
            gstreamer_pbutils::functions::codec_utils_caps_get_mime_codec(caps)
                .ok()
                .map(|c| c.to_string())
        })
        .collect();
    format!("video/mp4; codecs=\"{}\"", codecs.join(", "))
}
