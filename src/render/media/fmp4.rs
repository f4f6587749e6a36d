//! The live preview: the fragmented muxer's output cut into an init segment and `moof`
//! fragments, and the codec string of the init segment.

use std::sync::mpsc;

use gstreamer_app as gst_app;

use super::*;

/// Reads the fragmented muxer's output and cuts it into init segment and fragments.
pub(super) fn spawn_fragmenter(sink: gst_app::AppSink) -> mpsc::Receiver<LiveChunk> {
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
                        let mime = codec_mime(&init);
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

/// `video/mp4; codecs="avc1.PPCCLL[, mp4a.40.2]"` read from an init segment's `avcC` box.
pub fn codec_mime(init: &[u8]) -> String {
    let find = |tag: &[u8]| init.windows(4).position(|w| w == tag);
    let mut codecs = Vec::new();
    if let Some(i) = find(b"avcC")
        && let Some(b) = init.get(i + 5..i + 8)
    {
        codecs.push(format!("avc1.{:02X}{:02X}{:02X}", b[0], b[1], b[2]));
    }
    if find(b"mp4a").is_some() {
        codecs.push("mp4a.40.2".to_string());
    }
    format!("video/mp4; codecs=\"{}\"", codecs.join(", "))
}
