//! Still images: the JPEG poster frame and PNGs (contact sheet, golden frames).

use std::path::Path;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::*;

/// A JPEG of one RGBA frame, written atomically.
pub fn write_thumbnail(
    rgba: &[u8],
    width: u32,
    height: u32,
    dest: &Path,
) -> Result<(), MediaError> {
    write_image(rgba, width, height, dest, "jpegenc quality=88")
}

/// A PNG of one RGBA image, written atomically.
pub fn write_png(rgba: &[u8], width: u32, height: u32, dest: &Path) -> Result<(), MediaError> {
    write_image(rgba, width, height, dest, "pngenc")
}

pub(super) fn write_image(
    rgba: &[u8],
    width: u32,
    height: u32,
    dest: &Path,
    encoder: &str,
) -> Result<(), MediaError> {
    init()?;
    let desc = format!(
        "appsrc name=src format=time caps=video/x-raw,format=RGBA,width={width},height={height},framerate=1/1 \
         ! videoconvert ! {encoder} ! appsink name=sink sync=false"
    );
    let pipeline = gst::parse::launch(&desc).map_err(|e| MediaError::Pipeline(e.to_string()))?;
    let bin = pipeline
        .clone()
        .downcast::<gst::Bin>()
        .map_err(|_| MediaError::Pipeline("not a bin".into()))?;
    let src = bin
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or_else(|| MediaError::Pipeline("appsrc missing".into()))?;
    let sink = bin
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| MediaError::Pipeline("appsink missing".into()))?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| MediaError::Pipeline(e.to_string()))?;
    let mut buf = gst::Buffer::from_slice(rgba.to_vec());
    if let Some(b) = buf.get_mut() {
        b.set_pts(gst::ClockTime::ZERO);
    }
    let jpeg = src
        .push_buffer(buf)
        .ok()
        .and_then(|_| src.end_of_stream().ok())
        .and_then(|_| sink.pull_sample().ok())
        .and_then(|s| {
            s.buffer()
                .and_then(|b| b.map_readable().ok().map(|m| m.as_slice().to_vec()))
        });
    let _ = pipeline.set_state(gst::State::Null);
    let jpeg =
        jpeg.ok_or_else(|| MediaError::Pipeline("image encoding produced nothing".into()))?;
    let dir = dest.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.part", uuid::Uuid::new_v4()));
    std::fs::write(&tmp, &jpeg).map_err(|e| MediaError::Io(tmp.clone(), e))?;
    std::fs::rename(&tmp, dest).map_err(|e| MediaError::Io(dest.to_path_buf(), e))
}
