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

/// What of a frame's patch differs from the frame before it: all of it (a job's first
/// frame), or some tiles of the head (packed `x | y << 16`, head-box relative) and the eyes
/// and mouth boxes (each this frame's with the last one's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    Whole,
    Parts {
        tiles: Vec<u32>,
        boxes: [[u32; 4]; 2],
    },
}

/// A rendered frame: its patch ([`PatchGeometry::apply`] puts it into a frame) and what of
/// it changed since the frame before.
pub struct Rendered {
    pub patch: crate::render::media::PooledFrame,
    pub changed: Changed,
}

/// What of the head a frame recomposites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Composite {
    None,
    /// The whole head box (a job's first frame).
    Whole,
    /// `n` tiles, listed from `base` on in the batch's tile list.
    Tiles {
        base: u32,
        n: u32,
    },
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
    /// Per tile of the model, the pose its part of `head` was composited at; `None` before
    /// the first frame.
    pub(super) held: Option<Vec<PoseMap>>,
    /// The batch's tile lists (each frame's tiles to recomposite, one after the other).
    pub(super) tile_list: wgpu::Buffer,
    /// Where the last frame's eyes and mouth could touch ([`Layout::eyes_extent`],
    /// [`Layout::mouth_extent`]).
    pub(super) features: [[u32; 4]; 2],
    /// Draw eyes and mouth over their whole boxes (the reference the extents are checked
    /// against).
    pub(super) whole_boxes: bool,
    pub(super) caption_buf: wgpu::Buffer,
    pub(super) captions: Option<[u32; 4]>,
    pub(super) bind_group: wgpu::BindGroup,
    pub(super) staging: Vec<wgpu::Buffer>,
    /// Frames encoded into the current submission, waiting to be read back: what changed
    /// in each.
    pub(super) encoded: Vec<Changed>,
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
        let tile_list = tile_list_buffer(gpu, 1);
        let bind_group = gpu.bind_group(Bindings {
            uniforms: &uniform_buf,
            base: &model.base,
            out: &patch,
            layer: &model.layer,
            caps: &caption_buf,
            head: &head,
            layer_tex: &model.layer_tex,
            tiles: &tile_list,
        });
        Self {
            model,
            geometry,
            uniforms,
            uniform_buf,
            patch,
            head,
            held: None,
            tile_list,
            features: [[0; 4]; 2],
            whole_boxes: false,
            caption_buf,
            captions: geometry.caption,
            bind_group,
            staging: Vec::new(),
            encoded: Vec::new(),
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
            + self.tile_list.size()
            + self.staging.iter().map(wgpu::Buffer::size).sum::<u64>()
    }

    /// Grows the uniform slots and staging buffers to hold `n` frames per submission, and
    /// the tile list to hold `tiles` entries.
    pub(super) fn reserve(&mut self, gpu: &Gpu, n: usize, tiles: usize) {
        let slots = (self.uniform_buf.size() / gpu.uniform_stride) as usize;
        let listed = (self.tile_list.size() / 4) as usize;
        if slots < n || listed < tiles {
            if slots < n {
                self.uniform_buf = gpu.uniform_slots(n);
            }
            if listed < tiles {
                self.tile_list = tile_list_buffer(gpu, tiles);
            }
            self.bind_group = gpu.bind_group(Bindings {
                uniforms: &self.uniform_buf,
                base: &self.model.base,
                out: &self.patch,
                layer: &self.model.layer,
                caps: &self.caption_buf,
                head: &self.head,
                layer_tex: &self.model.layer_tex,
                tiles: &self.tile_list,
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
        if self.encoded.is_empty() {
            self.staging.truncate(n.max(1));
        }
    }

    /// What of the head to recomposite for a frame at `pose`: all of it on the first frame;
    /// later, each tile the pose has moved by its step since it was composited (appended to
    /// `list`). Updates the held poses.
    fn hold(&mut self, pose: &PoseMap, list: &mut Vec<u32>) -> Composite {
        let layout = self.model.layout;
        let Some(held) = &mut self.held else {
            self.held = Some(vec![*pose; self.model.tiles.len()]);
            return Composite::Whole;
        };
        let base = list.len();
        for (tile, at) in self.model.tiles.iter().zip(held.iter_mut()) {
            if at.shift2(pose, tile.frame_box(), &layout) >= tile.step2 {
                *at = *pose;
                list.push(tile.at);
            }
        }
        match list.len() - base {
            0 => Composite::None,
            n => Composite::Tiles {
                base: base as u32,
                n: n as u32,
            },
        }
    }

    /// Records `frames` into `enc`: per frame the head's moved tiles, the eyes and mouth
    /// boxes, the caption box (all into the patch), then a copy of the patch to that frame's
    /// staging buffer. Uniform slots, tile lists and the caption line are written now, so
    /// they land before the submission.
    pub fn encode(&mut self, gpu: &Gpu, enc: &mut wgpu::CommandEncoder, frames: &[FrameRequest]) {
        let layout = self.model.layout;
        let mut slots = vec![0u8; frames.len() * gpu.uniform_stride as usize];
        let mut composite = vec![Composite::None; frames.len()];
        let mut list = Vec::new();
        let mut features = vec![[[0; 4]; 2]; frames.len()];
        let mut changed = Vec::with_capacity(frames.len());
        for (i, f) in frames.iter().enumerate() {
            if let Some(line) = &f.line {
                gpu.queue
                    .write_buffer(&self.caption_buf, 0, bytemuck::cast_slice(line));
            }
            let p = f.params;
            let pose = PoseMap::new([p.yaw, p.pitch, p.roll, p.breath], &layout);
            composite[i] = self.hold(&pose, &mut list);
            // Eyes and mouth are drawn at the exact pose: the tiles under them are within
            // their step of it.
            self.uniforms.set_frame(p);
            // Eyes and mouth only where they can touch; where the last frame's could too
            // unless the head is copied over the patch again (the kernels write the head's
            // pixels where no shape covers).
            let (eyes, mouth) = if self.whole_boxes {
                (layout.eyes_box, layout.mouth_box)
            } else {
                (
                    layout.eyes_extent(&p, &pose),
                    layout.mouth_extent(&p, &pose),
                )
            };
            let both = [
                union_box(eyes, self.features[0]),
                union_box(mouth, self.features[1]),
            ];
            features[i] = match composite[i] {
                Composite::None => both,
                _ => [eyes, mouth],
            };
            self.features = [eyes, mouth];
            changed.push(match composite[i] {
                Composite::Whole => Changed::Whole,
                Composite::Tiles { base, n } => Changed::Parts {
                    tiles: list[base as usize..(base + n) as usize].to_vec(),
                    boxes: both,
                },
                Composite::None => Changed::Parts {
                    tiles: Vec::new(),
                    boxes: both,
                },
            });
            self.uniforms.ebox = features[i][0];
            self.uniforms.mbox = features[i][1];
            self.uniforms.boxsz[2] = match composite[i] {
                Composite::Tiles { base, .. } => base,
                _ => 0,
            };
            self.uniforms.cword = f.caption.map_or([0.0; 4], |(a, b)| [1.0, a, b, 0.0]);
            let at = i * gpu.uniform_stride as usize;
            slots[at..at + size_of::<Uniforms>()]
                .copy_from_slice(bytemuck::bytes_of(&self.uniforms));
        }
        self.reserve(gpu, frames.len(), list.len());
        gpu.queue.write_buffer(&self.uniform_buf, 0, &slots);
        if !list.is_empty() {
            gpu.queue
                .write_buffer(&self.tile_list, 0, bytemuck::cast_slice(&list));
        }
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
                Composite::Whole => {
                    dispatch(enc, &[(&gpu.composite_pipeline, layout.head_box)], &offset)
                }
                Composite::Tiles { n, .. } => {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    pass.set_bind_group(0, &self.bind_group, &offset);
                    pass.set_pipeline(&gpu.tiles_pipeline);
                    pass.dispatch_workgroups(n, 1, 1);
                }
                Composite::None => {}
            }
            // A held head is in the patch already (copied when it was composited); the
            // eyes and mouth below overwrite their whole boxes, so nothing of the last
            // frame's features survives.
            if recomposite != Composite::None {
                enc.copy_buffer_to_buffer(&self.head, 0, &self.patch, 0, head_bytes);
            }
            dispatch(
                enc,
                &[
                    (&gpu.eyes_pipeline, features[i][0]),
                    (&gpu.mouth_pipeline, features[i][1]),
                ],
                &offset,
            );
            if let Some(cbox) = self.captions {
                dispatch(enc, &[(&gpu.captions_pipeline, cbox)], &offset);
            }
            enc.copy_buffer_to_buffer(&self.patch, 0, &self.staging[i], 0, self.patch.size());
        }
        self.encoded = changed;
    }

    /// After the submission: maps the staging buffers of the encoded frames.
    pub fn map(&self) {
        for buf in &self.staging[..self.encoded.len()] {
            buf.slice(..).map_async(wgpu::MapMode::Read, |_| {});
        }
    }

    /// After the device finished: copies the encoded frames' patches into `out` (one buffer
    /// per frame, in order) and says what changed in each.
    pub fn read(
        &mut self,
        out: Vec<crate::render::media::PooledFrame>,
    ) -> Result<Vec<Rendered>, GpuError> {
        let changed = std::mem::take(&mut self.encoded);
        let mut rendered = Vec::with_capacity(changed.len());
        for ((buf, mut frame), changed) in self.staging.iter().zip(out).zip(changed) {
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
            rendered.push(Rendered {
                patch: frame,
                changed,
            });
        }
        Ok(rendered)
    }

    /// After a failed submission: forgets the encoded frames and their staging buffers
    /// (mapped or waiting to be), so the next batch starts on fresh ones.
    pub fn abandon(&mut self) {
        self.encoded.clear();
        self.staging.clear();
        // The patch may not hold the head any more: composite the next frame afresh.
        self.held = None;
    }
}

/// A buffer for `n` tile-list entries.
fn tile_list_buffer(gpu: &Gpu, n: usize) -> wgpu::Buffer {
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("tile lists"),
        size: (n.max(1) * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}
