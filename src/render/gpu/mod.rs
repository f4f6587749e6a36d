//! The wgpu device and the avatar kernels (`shaders/avatar.wgsl`).
//!
//! [`Gpu::new`] prefers a real GPU and falls back to a CPU Vulkan device (Mesa lavapipe); no
//! adapter is a clear [`GpuError`], not a panic. Device, shader module and pipelines are
//! built once and shared (`Arc<Gpu>`). A [`Model`] holds the static layers of one avatar
//! look (background, shadow, shoulders, neck; the head at rest), rendered once and shared by
//! every job that uses the same look (with a CPU copy of the static frame); a [`Target`] (one
//! per job) holds the job's own buffers and records a batch of frames into one submission,
//! each frame with its own uniform slot and staging buffer. Per frame only what changes is
//! drawn: the head is recomposited (the layer moved by the pose, over the 8×8 tiles it can
//! reach) only once the pose has moved it by [`HEAD_STEP_PX`]; eyes, brows and mouth are SDF
//! shaded in two small boxes; captions in theirs. Only that patch (head box + caption box)
//! is read back; [`PatchGeometry::apply`] writes it into a reused copy of the static frame.
//! Only the [`scheduler`] thread touches these; jobs talk to it.

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

use crate::render::timeline::script::FrameParams;

pub mod i420;
pub mod scheduler;

const SHADER: &str = include_str!("../../../shaders/avatar.wgsl");
const WG: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no usable GPU or CPU Vulkan device (install mesa-vulkan-drivers for lavapipe): {0}")]
    NoAdapter(String),
    #[error("the device could not be opened: {0}")]
    Device(String),
    #[error("frame readback failed: {0}")]
    Readback(String),
}

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    layout: wgpu::BindGroupLayout,
    base_pipeline: wgpu::ComputePipeline,
    layer_pipeline: wgpu::ComputePipeline,
    composite_pipeline: wgpu::ComputePipeline,
    tiles_pipeline: wgpu::ComputePipeline,
    eyes_pipeline: wgpu::ComputePipeline,
    mouth_pipeline: wgpu::ComputePipeline,
    captions_pipeline: wgpu::ComputePipeline,
    /// Bytes between two frames' uniform slots (the device's offset alignment).
    uniform_stride: u64,
}

impl Gpu {
    /// Opens the best device: discrete, integrated, then CPU (lavapipe).
    pub fn new() -> Result<Self, GpuError> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::VULKAN;
        let instance = wgpu::Instance::new(desc);
        let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::VULKAN));
        let rank = |a: &wgpu::Adapter| match a.get_info().device_type {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Cpu => 3,
            wgpu::DeviceType::Other => 4,
        };
        let adapter = adapters
            .into_iter()
            .min_by_key(rank)
            .ok_or_else(|| GpuError::NoAdapter("Vulkan reports no adapter".into()))?;
        let info = adapter.get_info();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("reelgen"),
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| GpuError::Device(e.to_string()))?;

        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("avatar.wgsl"),
            source: wgpu::ShaderSource::Wgsl(SHADER.into()),
        });
        let storage = |binding, read_only| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("avatar"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        // One slot per frame of a batch, selected per dispatch.
                        has_dynamic_offset: true,
                        min_binding_size: std::num::NonZeroU64::new(size_of::<Uniforms>() as u64),
                    },
                    count: None,
                },
                storage(1, true),
                storage(2, false),
                storage(3, false),
                storage(4, true),
                storage(5, false),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("avatar"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = |entry: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        Ok(Self {
            base_pipeline: pipeline("render_base"),
            layer_pipeline: pipeline("render_head_layer"),
            composite_pipeline: pipeline("composite_head"),
            tiles_pipeline: pipeline("composite_tiles"),
            eyes_pipeline: pipeline("render_eyes"),
            mouth_pipeline: pipeline("render_mouth"),
            captions_pipeline: pipeline("render_captions"),
            uniform_stride: (size_of::<Uniforms>() as u64).next_multiple_of(u64::from(
                device.limits().min_uniform_buffer_offset_alignment,
            )),
            device,
            queue,
            info,
            layout,
        })
    }

    /// `true` on a CPU device (lavapipe): colour conversion is then cheaper in GStreamer
    /// than in [`i420`]'s kernel (measured by `reelgen bench generate`).
    pub fn is_cpu(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// A uniform buffer of `n` frame slots.
    fn uniform_slots(&self, n: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("uniform slots"),
            size: self.uniform_stride * n.max(1) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    fn bind_group(
        &self,
        uniforms: &wgpu::Buffer,
        base: &wgpu::Buffer,
        out: &wgpu::Buffer,
        layer: &wgpu::Buffer,
        caps: &wgpu::Buffer,
        head: &wgpu::Buffer,
    ) -> wgpu::BindGroup {
        fn entry(binding: u32, b: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
            wgpu::BindGroupEntry {
                binding,
                resource: b.as_entire_binding(),
            }
        }
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("avatar"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: uniforms,
                        offset: 0,
                        size: std::num::NonZeroU64::new(size_of::<Uniforms>() as u64),
                    }),
                },
                entry(1, base),
                entry(2, out),
                entry(3, layer),
                entry(4, caps),
                entry(5, head),
            ],
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.device_type, self.info.backend
        )
    }
}

/// Colours and shapes of one avatar over one background, in the kernel's layout.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct Style {
    pub skin: [f32; 4],
    pub hair: [f32; 4],
    pub cloth: [f32; 4],
    pub iris: [f32; 4],
    pub lip: [f32; 4],
    pub bg0: [f32; 4],
    pub bg1: [f32; 4],
    /// hair style, face shape, background kind, gradient angle (radians).
    pub misc: [f32; 4],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Uniforms {
    frame: FrameParams,
    style: Style,
    size: [f32; 4],
    center: [f32; 4],
    boxsz: [u32; 4],
    ebox: [u32; 4],
    mbox: [u32; 4],
    cbox: [u32; 4],
    cword: [f32; 4],
}

/// Where the avatar sits in a frame, in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    pub scale: f32,
    pub cx: f32,
    pub cy: f32,
    /// Head box: x, y, width, height.
    pub head_box: [u32; 4],
    /// Boxes of the moving features, x, y, width, height: eyes and brows, and the mouth
    /// (each with room for the largest pose shift and expression).
    pub eyes_box: [u32; 4],
    pub mouth_box: [u32; 4],
}

impl Layout {
    pub fn new(width: u32, height: u32, long_hair: bool) -> Self {
        let (w, h) = (width as f32, height as f32);
        let scale = (h * 0.5).min(w * 0.62);
        let cx = w * 0.5;
        let cy = h * 0.42;
        let bottom = if long_hair { 0.78 } else { 0.72 };
        let x0 = (cx - 0.56 * scale).max(0.0);
        let y0 = (cy - 0.72 * scale).max(0.0);
        let x1 = (cx + 0.56 * scale).min(w);
        let y1 = (cy + bottom * scale).min(h);
        // A box in head units (x0, y0, x1, y1 around the head centre) → pixels in the frame.
        let pixels = |[x0, y0, x1, y1]: [f32; 4]| {
            let (px0, py0) = ((cx + x0 * scale).max(0.0), (cy + y0 * scale).max(0.0));
            let (px1, py1) = ((cx + x1 * scale).min(w), (cy + y1 * scale).min(h));
            [
                px0 as u32,
                py0 as u32,
                (px1 - px0).max(0.0).ceil() as u32,
                (py1 - py0).max(0.0).ceil() as u32,
            ]
        };
        Self {
            scale,
            cx,
            cy,
            head_box: [
                x0 as u32,
                y0 as u32,
                (x1 - x0).ceil() as u32,
                (y1 - y0).ceil() as u32,
            ],
            // Brows reach y −0.14, lids and creases ±0.18 across; the lips at the widest
            // and most open span ±0.12 and y 0.11–0.32; 0.03 for pose shifts.
            eyes_box: pixels([-0.22, -0.18, 0.22, 0.055]),
            mouth_box: pixels([-0.16, 0.075, 0.16, 0.36]),
        }
    }
}

/// The static layers of one avatar over one background at one size: the background,
/// shadow, shoulders and neck (`base`, a whole frame) and the head without its moving parts
/// (`layer`, head-box sized, followed by the per-row spans the head can reach). Read-only
/// once built, so any number of jobs share one through the scheduler's model cache.
pub struct Model {
    base: wgpu::Buffer,
    layer: wgpu::Buffer,
    /// 8×8 tiles of the head box the moving head can reach (listed in `layer`).
    tiles: u32,
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
        let max_tiles =
            u64::from(layout.head_box[2].div_ceil(WG)) * u64::from(layout.head_box[3].div_ceil(WG));
        let layer_bytes = ((layer_px + 2 * u64::from(layout.head_box[3]) + max_tiles) * 4).max(8);
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
        let bind_group = gpu.bind_group(&uniform_buf, &base, &out, &layer, &caps, &no_head);

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
        let (frame, spans) = read_static(gpu, &probe, idx, fb as usize, &layout);
        let tiles = span_tiles(&spans, &layout);
        let mut tail = spans;
        tail.extend_from_slice(&tiles);
        gpu.queue
            .write_buffer(&layer, layer_px * 4, bytemuck::cast_slice(&tail));
        Self {
            base,
            layer,
            tiles: tiles.len() as u32,
            layout,
            bytes: 2 * frame_bytes + layer_bytes,
            frame,
        }
    }
}

/// Where a frame's patch goes: the head box, then the caption box, each row-major.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchGeometry {
    pub width: u32,
    pub height: u32,
    pub head: [u32; 4],
    pub caption: Option<[u32; 4]>,
}

impl PatchGeometry {
    pub fn new(width: u32, height: u32, layout: &Layout, captions: Option<[u32; 4]>) -> Self {
        let clip = |[x, y, w, h]: [u32; 4]| {
            let x = x.min(width);
            let y = y.min(height);
            [x, y, w.min(width - x), h.min(height - y)]
        };
        Self {
            width,
            height,
            head: clip(layout.head_box),
            caption: captions.map(clip),
        }
    }

    /// Bytes of one patch.
    pub fn bytes(&self) -> usize {
        let px = |b: [u32; 4]| b[2] as usize * b[3] as usize;
        (px(self.head) + self.caption.map_or(0, px)) * 4
    }

    /// Writes `patch` into `frame` (RGBA, width × height), which must hold this look's
    /// static frame or an earlier frame of it outside the patch.
    pub fn apply(&self, patch: &[u8], frame: &mut [u8]) {
        let stride = self.width as usize * 4;
        let mut at = 0usize;
        for [x, y, w, h] in std::iter::once(self.head).chain(self.caption) {
            let row = w as usize * 4;
            for r in 0..h as usize {
                let dst = (y as usize + r) * stride + x as usize * 4;
                if let (Some(d), Some(s)) = (frame.get_mut(dst..dst + row), patch.get(at..at + row))
                {
                    d.copy_from_slice(s);
                }
                at += row;
            }
        }
    }
}

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
    model: Arc<Model>,
    geometry: PatchGeometry,
    uniforms: Uniforms,
    uniform_buf: wgpu::Buffer,
    patch: wgpu::Buffer,
    /// The composited head (head-box sized), kept from frame to frame.
    head: wgpu::Buffer,
    /// The pose (yaw, pitch, roll, breath) `head` was composited at; `None` before the first.
    held: Option<[f32; 4]>,
    caption_buf: wgpu::Buffer,
    captions: Option<[u32; 4]>,
    bind_group: wgpu::BindGroup,
    staging: Vec<wgpu::Buffer>,
    /// Frames encoded into the current submission, waiting to be read back.
    encoded: usize,
}

/// The head is recomposited once the pose would move some pixel of it by this much; until
/// then frames reuse the composite (and draw eyes and mouth at the same pose, so they stay
/// exactly on the face). Idle motion moves ~0.1 px per frame at 720p, so this halves or
/// better the per-frame composite while no motion step is ever visible.
pub const HEAD_STEP_PX: f32 = 0.25;

/// How far (pixels) going from pose `a` to pose `b` moves the farthest corner of the head
/// box, by the kernel's `posed` mapping.
fn pose_shift_px(a: [f32; 4], b: [f32; 4], layout: &Layout) -> f32 {
    let posed = |[yaw, pitch, roll, breath]: [f32; 4], (x, y): (f32, f32)| {
        let y = y + 0.006 * breath - 0.45;
        let (s, c) = (-roll).sin_cos();
        let (rx, ry) = (c * x - s * y, s * x + c * y + 0.45);
        (rx - yaw * 0.06, ry - pitch * 0.05)
    };
    let [x, y, w, h] = layout.head_box.map(|v| v as f32);
    [(x, y), (x + w, y), (x, y + h), (x + w, y + h)]
        .into_iter()
        .map(|(px, py)| {
            let p = (
                (px - layout.cx) / layout.scale,
                (py - layout.cy) / layout.scale,
            );
            let (ax, ay) = posed(a, p);
            let (bx, by) = posed(b, p);
            (ax - bx).hypot(ay - by) * layout.scale
        })
        .fold(0.0, f32::max)
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
        let bind_group = gpu.bind_group(
            &uniform_buf,
            &model.base,
            &patch,
            &model.layer,
            &caption_buf,
            &head,
        );
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
    fn reserve(&mut self, gpu: &Gpu, n: usize) {
        let slots = (self.uniform_buf.size() / gpu.uniform_stride) as usize;
        if slots < n {
            self.uniform_buf = gpu.uniform_slots(n);
            self.bind_group = gpu.bind_group(
                &self.uniform_buf,
                &self.model.base,
                &self.patch,
                &self.model.layer,
                &self.caption_buf,
                &self.head,
            );
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
            self.uniforms.frame = FrameParams {
                yaw: held[0],
                pitch: held[1],
                roll: held[2],
                breath: held[3],
                ..p
            };
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

impl Uniforms {
    fn new(
        frame: FrameParams,
        style: Style,
        width: u32,
        height: u32,
        layout: &Layout,
        captions: Option<[u32; 4]>,
    ) -> Self {
        Self {
            frame,
            style,
            size: [
                width as f32,
                height as f32,
                layout.scale,
                1.0 / layout.scale,
            ],
            center: [
                layout.cx,
                layout.cy,
                layout.head_box[0] as f32,
                layout.head_box[1] as f32,
            ],
            boxsz: [layout.head_box[2], layout.head_box[3], 0, 0],
            ebox: layout.eyes_box,
            mbox: layout.mouth_box,
            cbox: captions.unwrap_or_default(),
            cword: [0.0; 4],
        }
    }
}

/// Reads the static probe: the static frame (`frame_bytes`, then the head layer). On a
/// readback failure the frame is black (frames are still whole: every patch covers the
/// moving parts) and every span full.
fn read_static(
    gpu: &Gpu,
    probe: &wgpu::Buffer,
    idx: wgpu::SubmissionIndex,
    frame_bytes: usize,
    layout: &Layout,
) -> (Arc<[u8]>, Vec<u32>) {
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
        return (black(), full);
    }
    let Ok(view) = slice.get_mapped_range() else {
        return (black(), full);
    };
    let frame: Arc<[u8]> = view[..frame_bytes].into();
    let spans = row_spans(bytemuck::cast_slice(&view[frame_bytes..]), layout);
    drop(view);
    probe.unmap();
    (frame, spans)
}

/// The 8×8 tiles of the head box that meet `spans` (two per row), packed `x | y << 16`.
fn span_tiles(spans: &[u32], layout: &Layout) -> Vec<u32> {
    let [_, _, bw, bh] = layout.head_box;
    let wg = WG as usize;
    let mut tiles = Vec::new();
    for ty in 0..bh.div_ceil(WG) as usize {
        let rows = spans
            .chunks_exact(2)
            .skip(ty * wg)
            .take(wg)
            .filter(|s| s[1] > s[0]);
        let (lo, hi) = rows.fold((u32::MAX, 0), |(lo, hi), s| (lo.min(s[0]), hi.max(s[1])));
        if lo < hi {
            for tx in lo / WG..hi.min(bw).div_ceil(WG) {
                tiles.push(tx | (ty as u32) << 16);
            }
        }
    }
    tiles
}

/// Per row of the head box, the columns the moving head can ever cover: the layer's opaque
/// span widened by the largest pose displacement. Rows and corners outside stay `base`, so
/// the per-frame composite only copies them.
fn row_spans(px: &[u32], layout: &Layout) -> Vec<u32> {
    let [_, _, bw, bh] = layout.head_box;
    let margin = (0.035 * layout.scale).ceil() as i64 + 2;
    let mut rows: Vec<Option<(i64, i64)>> = (0..bh as usize)
        .map(|y| {
            let row = px.get(y * bw as usize..(y + 1) * bw as usize)?;
            let first = row.iter().position(|p| p >> 24 != 0)?;
            let last = row.iter().rposition(|p| p >> 24 != 0)?;
            Some((first as i64, last as i64 + 1))
        })
        .collect();
    // Widen vertically too: a row may be reached by content from rows `margin` away.
    let original = rows.clone();
    for (y, slot) in rows.iter_mut().enumerate() {
        let lo = y.saturating_sub(margin as usize);
        let hi = (y + margin as usize + 1).min(original.len());
        *slot = original[lo..hi]
            .iter()
            .flatten()
            .fold(None, |acc: Option<(i64, i64)>, &(a, b)| {
                Some(acc.map_or((a, b), |(x, y)| (x.min(a), y.max(b))))
            });
    }
    rows.iter()
        .flat_map(|r| match r {
            Some((a, b)) => [
                (a - margin).max(0) as u32,
                (b + margin).min(i64::from(bw)) as u32,
            ],
            None => [0, 0],
        })
        .collect()
}

/// `#rrggbb` → linear-ish [0, 1] RGBA (the kernel works in sRGB values directly).
pub fn hex_rgba(hex: &str) -> [f32; 4] {
    let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap_or(0x808080);
    [
        ((v >> 16) & 0xff) as f32 / 255.0,
        ((v >> 8) & 0xff) as f32 / 255.0,
        (v & 0xff) as f32 / 255.0,
        1.0,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tiles_cover_every_span_pixel_and_nothing_outside_the_box() {
        let layout = Layout::new(1280, 720, false);
        let [_, _, bw, bh] = layout.head_box;
        // A head-shaped set of spans: narrow at the top and bottom, wide in the middle.
        let spans: Vec<u32> = (0..bh)
            .flat_map(|y| {
                let half = (f64::from(bw)
                    * 0.45
                    * (1.0 - ((f64::from(y) / f64::from(bh)) * 2.0 - 1.0).powi(2)).sqrt())
                    as u32;
                let c = bw / 2;
                if half == 0 {
                    [0, 0]
                } else {
                    [c - half, c + half]
                }
            })
            .collect();
        let tiles = span_tiles(&spans, &layout);
        let covered: std::collections::HashSet<(u32, u32)> =
            tiles.iter().map(|t| (t & 0xffff, t >> 16)).collect();
        assert_eq!(covered.len(), tiles.len(), "no tile twice");
        for (y, s) in spans.chunks_exact(2).enumerate() {
            for x in s[0]..s[1] {
                assert!(
                    covered.contains(&(x / WG, y as u32 / WG)),
                    "({x}, {y}) not covered"
                );
            }
        }
        let all = bw.div_ceil(WG) * bh.div_ceil(WG);
        assert!(tiles.len() < all as usize, "the corners are skipped");
        assert!(
            tiles
                .iter()
                .all(|t| (t & 0xffff) < bw.div_ceil(WG) && (t >> 16) < bh.div_ceil(WG))
        );
    }

    #[test]
    fn pose_shift_grows_with_the_pose_change_and_is_zero_for_none() {
        let layout = Layout::new(1280, 720, false);
        let rest = [0.0, 0.0, 0.0, 0.5];
        assert_eq!(pose_shift_px(rest, rest, &layout), 0.0);
        // Breathing moves the head 0.006 units per unit of breath: 0.36 px at full breath.
        let breath = pose_shift_px(rest, [0.0, 0.0, 0.0, 1.5], &layout);
        assert!((breath - 0.006 * layout.scale).abs() < 1e-3, "{breath}");
        let small = pose_shift_px(rest, [0.001, 0.0, 0.0, 0.5], &layout);
        let large = pose_shift_px(rest, [0.01, 0.0, 0.0, 0.5], &layout);
        assert!(small < HEAD_STEP_PX && large > small * 5.0);
        let roll = pose_shift_px(rest, [0.0, 0.0, 0.01, 0.5], &layout);
        assert!(
            roll > 1.0,
            "a 0.01 rad roll moves the top of the box by pixels: {roll}"
        );
    }

    #[test]
    fn a_patch_lands_in_its_boxes_only() {
        let g = PatchGeometry {
            width: 8,
            height: 6,
            head: [2, 1, 3, 2],
            caption: Some([0, 5, 8, 1]),
        };
        assert_eq!(g.bytes(), (3 * 2 + 8) * 4);
        let patch: Vec<u8> = (0..g.bytes() as u32).map(|i| (i % 250 + 1) as u8).collect();
        let mut frame = vec![0u8; 8 * 6 * 4];
        g.apply(&patch, &mut frame);
        let px = |x: usize, y: usize| &frame[(y * 8 + x) * 4..(y * 8 + x) * 4 + 4];
        assert_eq!(px(2, 1), &patch[0..4]);
        assert_eq!(px(4, 2), &patch[20..24]);
        assert_eq!(px(0, 5), &patch[24..28]);
        assert_eq!(px(0, 0), &[0, 0, 0, 0]);
        assert_eq!(px(5, 1), &[0, 0, 0, 0]);
        let changed = frame.chunks_exact(4).filter(|p| p != &[0, 0, 0, 0]).count();
        assert_eq!(changed, 3 * 2 + 8);
    }
}
