//! The wgpu device and the avatar kernels (`shaders/avatar.wgsl`).
//!
//! [`Gpu::new`] prefers a real GPU and falls back to a CPU Vulkan device (Mesa lavapipe); no
//! adapter is a clear [`GpuError`], not a panic. Device, shader module and pipelines are
//! built once and shared (`Arc<Gpu>`). An [`AvatarRenderer`] (one per job) owns its buffers:
//! it renders the static layer (background, shadow, shoulders, neck) once, then per frame
//! dispatches the head kernel over the head's box only, and reads frames back through a ring
//! of staging buffers so rendering frame N overlaps reading back frame N−2.

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

use crate::generate::script::FrameParams;

const SHADER: &str = include_str!("../../shaders/avatar.wgsl");
const RING: usize = 3;
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
    features_pipeline: wgpu::ComputePipeline,
    captions_pipeline: wgpu::ComputePipeline,
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
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
                storage(1, true),
                storage(2, false),
                storage(3, false),
                storage(4, true),
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
            features_pipeline: pipeline("render_features"),
            captions_pipeline: pipeline("render_captions"),
            device,
            queue,
            info,
            layout,
        })
    }

    /// `true` on a CPU device (lavapipe): colour conversion is then cheaper in GStreamer.
    pub fn is_cpu(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
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
    fbox: [u32; 4],
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
    /// Box of the moving features (eyes, brows, mouth): x, y, width, height.
    pub features_box: [u32; 4],
}

impl Layout {
    pub fn new(width: u32, height: u32, long_hair: bool) -> Self {
        let (w, h) = (width as f32, height as f32);
        let scale = (h * 0.5).min(w * 0.62);
        let cx = w * 0.5;
        let cy = h * 0.42;
        let bottom = if long_hair { 1.0 } else { 0.72 };
        let x0 = (cx - 0.56 * scale).max(0.0);
        let y0 = (cy - 0.72 * scale).max(0.0);
        let x1 = (cx + 0.56 * scale).min(w);
        let y1 = (cy + bottom * scale).min(h);
        let fx0 = (cx - 0.26 * scale).max(0.0);
        let fy0 = (cy - 0.2 * scale).max(0.0);
        let fx1 = (cx + 0.26 * scale).min(w);
        let fy1 = (cy + 0.36 * scale).min(h);
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
            features_box: [
                fx0 as u32,
                fy0 as u32,
                (fx1 - fx0).ceil() as u32,
                (fy1 - fy0).ceil() as u32,
            ],
        }
    }
}

pub struct AvatarRenderer {
    gpu: Arc<Gpu>,
    width: u32,
    height: u32,
    uniforms: Uniforms,
    uniform_buf: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
    _base: wgpu::Buffer,
    _layer: wgpu::Buffer,
    caption_buf: wgpu::Buffer,
    captions: Option<[u32; 4]>,
    out: wgpu::Buffer,
    staging: Vec<wgpu::Buffer>,
    /// Frames submitted and not yet read back: (ring slot, submission).
    in_flight: std::collections::VecDeque<(usize, wgpu::SubmissionIndex)>,
    next_slot: usize,
    layout: Layout,
}

impl AvatarRenderer {
    /// Builds the job's buffers and renders its static layers; `rest` is the pose and
    /// expression the head layer is drawn in (the timeline's first frame).
    pub fn new(
        gpu: Arc<Gpu>,
        width: u32,
        height: u32,
        style: Style,
        rest: &FrameParams,
        captions: Option<[u32; 4]>,
    ) -> Self {
        let long_hair = style.misc[0] as u32 == 2;
        let layout = Layout::new(width, height, long_hair);
        let frame_bytes = u64::from(width) * u64::from(height) * 4;
        let uniforms = Uniforms {
            frame: *rest,
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
            fbox: layout.features_box,
            cbox: captions.unwrap_or_default(),
            cword: [0.0; 4],
        };
        let d = &gpu.device;
        let uniform_buf = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("uniforms"),
            contents: bytemuck::bytes_of(&uniforms),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        });
        let base = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("base"),
            size: frame_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let out = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("out"),
            size: frame_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        // The head layer, then one [start, end) span per row of the head box.
        let layer_px = u64::from(layout.head_box[2]) * u64::from(layout.head_box[3]);
        let layer = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("head layer"),
            size: ((layer_px + 2 * u64::from(layout.head_box[3])) * 4).max(8),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let caption_bytes = captions
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
        let staging = (0..RING)
            .map(|_| {
                d.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("staging"),
                    size: frame_bytes,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })
            .collect();
        let bind = |b: &wgpu::Buffer| {
            d.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("avatar"),
                layout: &gpu.layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: uniform_buf.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: b.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: out.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 3,
                        resource: layer.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 4,
                        resource: caption_buf.as_entire_binding(),
                    },
                ],
            })
        };
        let bind_group = bind(&base);

        // The static layer: render it into `out`, keep a copy in `base` for the head kernel.
        let mut enc = d.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&gpu.base_pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(width.div_ceil(WG), height.div_ceil(WG), 1);
            pass.set_pipeline(&gpu.layer_pipeline);
            let [_, _, bw, bh] = layout.head_box;
            pass.dispatch_workgroups(bw.div_ceil(WG), bh.div_ceil(WG), 1);
        }
        enc.copy_buffer_to_buffer(&out, 0, &base, 0, frame_bytes);
        let probe = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("layer probe"),
            size: (layer_px * 4).max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        enc.copy_buffer_to_buffer(&layer, 0, &probe, 0, layer_px * 4);
        let idx = gpu.queue.submit([enc.finish()]);
        let spans = row_spans(&gpu, &probe, idx, &layout);
        gpu.queue
            .write_buffer(&layer, layer_px * 4, bytemuck::cast_slice(&spans));

        Self {
            gpu,
            width,
            height,
            uniforms,
            uniform_buf,
            bind_group,
            _base: base,
            _layer: layer,
            caption_buf,
            captions,
            out,
            staging,
            in_flight: std::collections::VecDeque::new(),
            next_slot: 0,
            layout,
        }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn frame_bytes(&self) -> usize {
        self.width as usize * self.height as usize * 4
    }

    /// Frames submitted and not yet read back.
    pub fn pending(&self) -> usize {
        self.in_flight.len()
    }

    /// `true` when another frame can be submitted without reading one back first.
    pub fn can_submit(&self) -> bool {
        self.in_flight.len() < RING
    }

    /// Queues one frame: head kernel over the head box, then a copy to the next staging buffer.
    /// Uploads the coverage of the caption line to show from the next submitted frame on.
    pub fn set_caption_line(&mut self, coverage: &[u32]) {
        self.gpu
            .queue
            .write_buffer(&self.caption_buf, 0, bytemuck::cast_slice(coverage));
    }

    /// Queues one frame; `caption` is the highlighted word's x-range when a line shows.
    pub fn submit(&mut self, frame: &FrameParams, caption: Option<(f32, f32)>) {
        self.uniforms.frame = *frame;
        self.uniforms.cword = caption.map_or([0.0; 4], |(a, b)| [1.0, a, b, 0.0]);
        let g = &self.gpu;
        g.queue
            .write_buffer(&self.uniform_buf, 0, bytemuck::bytes_of(&self.uniforms));
        let slot = self.next_slot;
        self.next_slot = (self.next_slot + 1) % RING;
        let mut enc = g.device.create_command_encoder(&Default::default());
        {
            // Two passes: the features read what the composite wrote.
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&g.composite_pipeline);
            pass.set_bind_group(0, &self.bind_group, &[]);
            let [_, _, bw, bh] = self.layout.head_box;
            pass.dispatch_workgroups(bw.div_ceil(WG), bh.div_ceil(WG), 1);
        }
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&g.features_pipeline);
            pass.set_bind_group(0, &self.bind_group, &[]);
            let [_, _, fw, fh] = self.layout.features_box;
            pass.dispatch_workgroups(fw.div_ceil(WG), fh.div_ceil(WG), 1);
        }
        if let Some([_, _, cw, ch]) = self.captions {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&g.captions_pipeline);
            pass.set_bind_group(0, &self.bind_group, &[]);
            pass.dispatch_workgroups(cw.div_ceil(WG), ch.div_ceil(WG), 1);
        }
        enc.copy_buffer_to_buffer(
            &self.out,
            0,
            &self.staging[slot],
            0,
            self.frame_bytes() as u64,
        );
        let idx = g.queue.submit([enc.finish()]);
        self.staging[slot]
            .slice(..)
            .map_async(wgpu::MapMode::Read, |_| {});
        self.in_flight.push_back((slot, idx));
    }

    /// Reads back the oldest submitted frame (RGBA, `width * height * 4` bytes) into `dst`.
    pub fn read_oldest(&mut self, dst: &mut [u8]) -> Result<bool, GpuError> {
        let Some((slot, idx)) = self.in_flight.pop_front() else {
            return Ok(false);
        };
        self.gpu
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(idx),
                timeout: None,
            })
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        let buf = &self.staging[slot];
        {
            let view = buf
                .get_mapped_range(..)
                .map_err(|e| GpuError::Readback(format!("{e:?}")))?;
            let n = dst.len().min(view.len());
            dst[..n].copy_from_slice(&view[..n]);
        }
        buf.unmap();
        Ok(true)
    }
}

/// Per row of the head box, the columns the moving head can ever cover: the layer's opaque
/// span widened by the largest pose displacement. Rows and corners outside stay `base`, so
/// the per-frame composite skips them. On any readback failure every row is full.
fn row_spans(
    gpu: &Gpu,
    probe: &wgpu::Buffer,
    idx: wgpu::SubmissionIndex,
    layout: &Layout,
) -> Vec<u32> {
    let [_, _, bw, bh] = layout.head_box;
    let full: Vec<u32> = (0..bh).flat_map(|_| [0, bw]).collect();
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
        return full;
    }
    let Ok(view) = slice.get_mapped_range() else {
        return full;
    };
    let px: &[u32] = bytemuck::cast_slice(&view);
    let margin = (0.035 * layout.scale).ceil() as i64 + 2;
    let mut rows: Vec<Option<(i64, i64)>> = (0..bh as usize)
        .map(|y| {
            let row = &px[y * bw as usize..(y + 1) * bw as usize];
            let first = row.iter().position(|p| p >> 24 != 0)?;
            let last = row.iter().rposition(|p| p >> 24 != 0)?;
            Some((first as i64, last as i64 + 1))
        })
        .collect();
    drop(view);
    probe.unmap();
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
