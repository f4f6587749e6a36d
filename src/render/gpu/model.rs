//! [`Model`]: the static layers of one avatar look at one size (background, shadow,
//! shoulders, neck; the head at rest), rendered once and shared by every job through the
//! scheduler's model cache, with a CPU copy of the static frame; [`ModelKey`] names a look.

use std::sync::Arc;

use wgpu::util::DeviceExt;

use super::abi::*;
use super::layout::*;
use super::{Bindings, Gpu, WG};
use crate::render::timeline::script::FrameParams;

/// The static layers of one avatar over one background at one size: the background,
/// shadow, shoulders and neck (`base`, a whole frame) and the head without its moving parts
/// (`layer`, head-box sized, followed by the per-row spans the head can reach). Read-only
/// once built, so any number of jobs share one through the scheduler's model cache.
pub struct Model {
    pub(super) base: wgpu::Buffer,
    pub(super) layer: wgpu::Buffer,
    /// The head layer's pixels again, as a texture the composite samples.
    pub(super) layer_tex: wgpu::TextureView,
    /// 8×8 tiles of the head box the moving head can reach, each with its step.
    pub(super) tiles: Vec<HeadTile>,
    pub layout: Layout,
    /// The static frame (RGBA, width × height) on the CPU: what every frame of the look is
    /// outside its patch, so a job's frame buffers start as copies of it.
    pub frame: Arc<[u8]>,
    /// Device memory it holds (and the CPU copy).
    pub bytes: u64,
}

/// What a [`Model`] is drawn from; equal keys give identical layers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelKey(Vec<u8>);

impl ModelKey {
    /// The layers depend on the style, the size and the rest pose's expression (smile).
    pub fn new(style: &Style, width: u32, height: u32, rest: &FrameParams) -> Self {
        let mut k = bytemuck::bytes_of(style).to_vec();
        k.extend_from_slice(&width.to_le_bytes());
        k.extend_from_slice(&height.to_le_bytes());
        k.extend_from_slice(&rest.smile.to_bits().to_le_bytes());
        Self(k)
    }
}

impl Model {
    /// Renders the static layers (one submission) and derives the head's row spans.
    pub fn build(gpu: &Gpu, style: Style, width: u32, height: u32, rest: &FrameParams) -> Self {
        let long_hair = style.misc[0] as u32 == 2;
        let layout = Layout::new(width, height, long_hair);
        let frame_bytes = u64::from(width) * u64::from(height) * 4;
        let uniforms = Uniforms::new(*rest, style, width, height, &layout, None);
        let d = &gpu.device;
        let uniform_buf = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("model uniforms"),
            contents: bytemuck::bytes_of(&uniforms),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let base = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("base"),
            size: frame_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let out = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("model out"),
            size: frame_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        // The head layer, then one [start, end) span per row of the head box.
        let layer_px = u64::from(layout.head_box[2]) * u64::from(layout.head_box[3]);
        let layer_bytes = ((layer_px + 2 * u64::from(layout.head_box[3])) * 4).max(8);
        let layer = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("head layer"),
            size: layer_bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let caps = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("model caps"),
            size: 4,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let no_head = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("model head"),
            size: 4,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let no_tex = gpu.layer_texture(1, 1, &[0; 4]);
        let bind_group = gpu.bind_group(Bindings {
            uniforms: &uniform_buf,
            base: &base,
            out: &out,
            layer: &layer,
            caps: &caps,
            head: &no_head,
            layer_tex: &no_tex,
            tiles: &caps,
        });

        // The static layer: render it into `out`, keep a copy in `base` for the head kernel.
        let mut enc = d.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&gpu.base_pipeline);
            pass.set_bind_group(0, &bind_group, &[0]);
            pass.dispatch_workgroups(width.div_ceil(WG), height.div_ceil(WG), 1);
            pass.set_pipeline(&gpu.layer_pipeline);
            let [_, _, bw, bh] = layout.head_box;
            pass.dispatch_workgroups(bw.div_ceil(WG), bh.div_ceil(WG), 1);
        }
        enc.copy_buffer_to_buffer(&out, 0, &base, 0, frame_bytes);
        // Read back once: the static frame (kept on the CPU) and the layer (for its spans).
        let fb = frame_bytes;
        let probe = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("static probe"),
            size: fb + (layer_px * 4).max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        enc.copy_buffer_to_buffer(&out, 0, &probe, 0, fb);
        enc.copy_buffer_to_buffer(&layer, 0, &probe, fb, layer_px * 4);
        let idx = gpu.queue.submit([enc.finish()]);
        let (frame, spans, layer_px_bytes) = read_static(gpu, &probe, idx, fb as usize, &layout);
        let layer_tex = gpu.layer_texture(layout.head_box[2], layout.head_box[3], &layer_px_bytes);
        let tiles = HeadTile::judge(&span_tiles(&spans, &layout), &layer_px_bytes, &layout);
        gpu.queue
            .write_buffer(&layer, layer_px * 4, bytemuck::cast_slice(&spans));
        Self {
            base,
            layer,
            layer_tex,
            tiles,
            layout,
            bytes: 2 * frame_bytes + layer_bytes + layer_px * 4,
            frame,
        }
    }
}

/// Reads the static probe: the static frame (`frame_bytes`, then the head layer): the frame,
/// the head's row spans and the layer's pixels. On a readback failure the frame is black
/// (frames are still whole: every patch covers the moving parts), every span full and the
/// layer empty.
pub(super) fn read_static(
    gpu: &Gpu,
    probe: &wgpu::Buffer,
    idx: wgpu::SubmissionIndex,
    frame_bytes: usize,
    layout: &Layout,
) -> (Arc<[u8]>, Vec<u32>, Vec<u8>) {
    let [_, _, bw, bh] = layout.head_box;
    let full: Vec<u32> = (0..bh).flat_map(|_| [0, bw]).collect();
    let black = || -> Arc<[u8]> { vec![0u8; frame_bytes].into() };
    let slice = probe.slice(..);
    slice.map_async(wgpu::MapMode::Read, |_| {});
    if gpu
        .device
        .poll(wgpu::PollType::Wait {
            submission_index: Some(idx),
            timeout: None,
        })
        .is_err()
    {
        return (black(), full, Vec::new());
    }
    let Ok(view) = slice.get_mapped_range() else {
        return (black(), full, Vec::new());
    };
    let frame: Arc<[u8]> = view[..frame_bytes].into();
    let spans = row_spans(bytemuck::cast_slice(&view[frame_bytes..]), layout);
    let layer = view[frame_bytes..].to_vec();
    drop(view);
    probe.unmap();
    (frame, spans, layer)
}
