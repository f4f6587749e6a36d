//! [`Target`]: one job's buffers on the device. It records a batch of [`FrameRequest`]s into
//! one submission (each frame with its own uniform slot and staging buffer), drawing only
//! what changes per frame, and reads back only the patch.

use std::sync::Arc;

use super::abi::*;
use super::layout::*;
use super::model::*;
use super::{Bindings, Gpu, GpuError, WG};
use crate::render::timeline::script::FrameParams;

/// One frame to render for a job.
#[derive(Debug, Clone)]
pub struct FrameRequest {
    pub params: FrameParams,
    /// The highlighted word's x-range when a caption line shows.
    pub caption: Option<(f32, f32)>,
    /// A new caption line's coverage, shown from this frame on (only on a batch's first).
    pub line: Option<Arc<[u32]>>,
}

/// A job's own buffers over a shared [`Model`]: one uniform slot and one staging buffer per
/// frame of a batch (so a batch is one submission), the patch and the caption line.
pub struct Target {
    pub(super) model: Arc<Model>,
    pub(super) geometry: PatchGeometry,
    pub(super) uniforms: Uniforms,
    pub(super) uniform_buf: wgpu::Buffer,
    pub(super) patch: wgpu::Buffer,
    /// The composited head (head-box sized), kept from frame to frame.
    pub(super) head: wgpu::Buffer,
    /// The pose (yaw, pitch, roll, breath) `head` was composited at; `None` before the first.
    pub(super) held: Option<[f32; 4]>,
    pub(super) caption_buf: wgpu::Buffer,
    pub(super) captions: Option<[u32; 4]>,
    pub(super) bind_group: wgpu::BindGroup,
    pub(super) staging: Vec<wgpu::Buffer>,
    /// Frames encoded into the current submission, waiting to be read back.
    pub(super) encoded: usize,
}

impl Target {
    pub fn new(
        gpu: &Gpu,
        model: Arc<Model>,
        style: Style,
        width: u32,
        height: u32,
        rest: &FrameParams,
        captions: Option<[u32; 4]>,
    ) -> Self {
        let geometry = PatchGeometry::new(width, height, &model.layout, captions);
        let uniforms = Uniforms::new(*rest, style, width, height, &model.layout, geometry.caption);
        let d = &gpu.device;
        let patch = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("patch"),
            size: geometry.bytes().max(4) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let caption_bytes = geometry
            .caption
            .map_or(4, |[_, _, w, h]| {
                u64::from(w.div_ceil(4)) * u64::from(h) * 4
            })
            .max(4);
        let caption_buf = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("caption line"),
            size: caption_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let [_, _, bw, bh] = geometry.head;
        let head = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("composited head"),
            size: (u64::from(bw) * u64::from(bh) * 4).max(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let uniform_buf = gpu.uniform_slots(1);
        let bind_group = gpu.bind_group(Bindings {
            uniforms: &uniform_buf,
            base: &model.base,
            out: &patch,
            layer: &model.layer,
            caps: &caption_buf,
            head: &head,
            layer_tex: &model.layer_tex,
        });
        Self {
            model,
            geometry,
            uniforms,
            uniform_buf,
            patch,
            head,
            held: None,
            caption_buf,
            captions: geometry.caption,
            bind_group,
            staging: Vec::new(),
            encoded: 0,
        }
    }

    pub fn layout(&self) -> Layout {
        self.model.layout
    }

    pub fn geometry(&self) -> PatchGeometry {
        self.geometry
    }

    /// The look's static frame (shared with the model).
    pub fn static_frame(&self) -> Arc<[u8]> {
        self.model.frame.clone()
    }

    pub fn patch_bytes(&self) -> usize {
        self.geometry.bytes()
    }

    /// Device memory of this target's own buffers (the shared model not counted).
    pub fn bytes(&self) -> u64 {
        self.uniform_buf.size()
            + self.patch.size()
            + self.head.size()
            + self.caption_buf.size()
            + self.staging.iter().map(wgpu::Buffer::size).sum::<u64>()
    }

    /// Grows the uniform slots and staging buffers to hold `n` frames per submission.
    pub(super) fn reserve(&mut self, gpu: &Gpu, n: usize) {
        let slots = (self.uniform_buf.size() / gpu.uniform_stride) as usize;
        if slots < n {
            self.uniform_buf = gpu.uniform_slots(n);
            self.bind_group = gpu.bind_group(Bindings {
                uniforms: &self.uniform_buf,
                base: &self.model.base,
                out: &self.patch,
                layer: &self.model.layer,
                caps: &self.caption_buf,
                head: &self.head,
                layer_tex: &self.model.layer_tex,
            });
        }
        while self.staging.len() < n {
            self.staging
                .push(gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("staging"),
                    size: self.patch.size(),
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }));
        }
    }

    /// Lets go of staging buffers beyond `n` frames per submission (a batch that size or
    /// smaller is all this job gets now; a larger one would grow them again).
    pub fn trim(&mut self, n: usize) {
        if self.encoded == 0 {
            self.staging.truncate(n.max(1));
        }
    }

    /// Records `frames` into `enc`: per frame the head composite over the head box, the
    /// features box, the caption box (all into the patch), then a copy of the patch to that
    /// frame's staging buffer. Uniform
    /// slots and the caption line are written now, so they land before the submission.
    pub fn encode(&mut self, gpu: &Gpu, enc: &mut wgpu::CommandEncoder, frames: &[FrameRequest]) {
        self.reserve(gpu, frames.len());
        let layout = self.model.layout;
        let mut slots = vec![0u8; frames.len() * gpu.uniform_stride as usize];
        // Per frame: 0 none, 1 the whole head box (the first), 2 the head's tiles.
        let mut composite = vec![0u8; frames.len()];
        for (i, f) in frames.iter().enumerate() {
            if let Some(line) = &f.line {
                gpu.queue
                    .write_buffer(&self.caption_buf, 0, bytemuck::cast_slice(line));
            }
            let p = f.params;
            let pose = [p.yaw, p.pitch, p.roll, p.breath];
            let held = match self.held {
                Some(h) if pose_shift_px(h, pose, &layout) < HEAD_STEP_PX => h,
                held => {
                    composite[i] = if held.is_some() { 2 } else { 1 };
                    self.held = Some(pose);
                    pose
                }
            };
            self.uniforms.set_frame(FrameParams {
                yaw: held[0],
                pitch: held[1],
                roll: held[2],
                breath: held[3],
                ..p
            });
            self.uniforms.cword = f.caption.map_or([0.0; 4], |(a, b)| [1.0, a, b, 0.0]);
            let at = i * gpu.uniform_stride as usize;
            slots[at..at + size_of::<Uniforms>()]
                .copy_from_slice(bytemuck::bytes_of(&self.uniforms));
        }
        gpu.queue.write_buffer(&self.uniform_buf, 0, &slots);
        let dispatch = |enc: &mut wgpu::CommandEncoder,
                        pipelines: &[(&wgpu::ComputePipeline, [u32; 4])],
                        offset: &[u32]| {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_bind_group(0, &self.bind_group, offset);
            for (pipeline, [_, _, w, h]) in pipelines {
                pass.set_pipeline(pipeline);
                pass.dispatch_workgroups(w.div_ceil(WG), h.div_ceil(WG), 1);
            }
        };
        let head_bytes = self.head.size().min(self.patch.size());
        for (i, &recomposite) in composite.iter().enumerate() {
            let offset = [(i as u64 * gpu.uniform_stride) as u32];
            // Separate passes where one reads what the previous wrote.
            match recomposite {
                1 => dispatch(enc, &[(&gpu.composite_pipeline, layout.head_box)], &offset),
                2 => {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    pass.set_bind_group(0, &self.bind_group, &offset);
                    pass.set_pipeline(&gpu.tiles_pipeline);
                    pass.dispatch_workgroups(self.model.tiles, 1, 1);
                }
                _ => {}
            }
            enc.copy_buffer_to_buffer(&self.head, 0, &self.patch, 0, head_bytes);
            dispatch(
                enc,
                &[
                    (&gpu.eyes_pipeline, layout.eyes_box),
                    (&gpu.mouth_pipeline, layout.mouth_box),
                ],
                &offset,
            );
            if let Some(cbox) = self.captions {
                dispatch(enc, &[(&gpu.captions_pipeline, cbox)], &offset);
            }
            enc.copy_buffer_to_buffer(&self.patch, 0, &self.staging[i], 0, self.patch.size());
        }
        self.encoded = frames.len();
    }

    /// After the submission: maps the staging buffers of the encoded frames.
    pub fn map(&self) {
        for buf in &self.staging[..self.encoded] {
            buf.slice(..).map_async(wgpu::MapMode::Read, |_| {});
        }
    }

    /// After the device finished: copies the encoded frames' patches into `dst`, in order
    /// ([`PatchGeometry::apply`] puts one into a frame).
    pub fn read(&mut self, dst: &mut [crate::render::media::PooledFrame]) -> Result<(), GpuError> {
        let n = std::mem::take(&mut self.encoded);
        for (buf, frame) in self.staging[..n].iter().zip(dst.iter_mut()) {
            let view = match buf.get_mapped_range(..) {
                Ok(view) => view,
                Err(e) => {
                    // Some staging buffers may still be mapped or waiting to be.
                    self.abandon();
                    return Err(GpuError::Readback(format!("{e:?}")));
                }
            };
            let dst = frame.as_mut();
            let k = dst.len().min(view.len());
            dst[..k].copy_from_slice(&view[..k]);
            drop(view);
            buf.unmap();
        }
        Ok(())
    }

    /// After a failed submission: forgets the encoded frames and their staging buffers
    /// (mapped or waiting to be), so the next batch starts on fresh ones.
    pub fn abandon(&mut self) {
        self.encoded = 0;
        self.staging.clear();
    }
}
