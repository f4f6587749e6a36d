//! The wgpu device and the avatar kernels (`shaders/avatar.wgsl`).
//!
//! [`Gpu::new`] prefers a real GPU and falls back to a CPU Vulkan device (Mesa lavapipe); no
//! adapter is a clear [`GpuError`], not a panic. Device, shader module and pipelines are
//! built once and shared (`Arc<Gpu>`). A [`Model`] holds the static layers of one avatar
//! look (background, shadow, shoulders, neck; the head at rest), rendered once and shared by
//! every job that uses the same look (with a CPU copy of the static frame); a [`Target`] (one
//! per job) holds the job's own buffers and records a batch of frames into one submission,
//! each frame with its own uniform slot and staging buffer. Per frame only what changes is
//! drawn: each 8×8 tile the head can reach is recomposited (the layer moved by the pose)
//! only once the pose has moved it by its step ([`tile_step_px`]: [`HEAD_STEP_PX`] where it
//! is sharp, more where it is smooth); eyes, brows and mouth are SDF shaded at the exact
//! pose in two small boxes; captions in theirs. Only that patch (head box + caption box)
//! is read back; [`PatchGeometry::apply`] writes it into a reused copy of the static frame.
//! Only the [`scheduler`] thread touches these; jobs talk to it.

use abi::Uniforms;

pub mod abi;
pub mod i420;
pub mod layout;
pub mod model;
pub mod scheduler;
pub mod target;

pub use abi::{Style, hex_rgba};
pub use layout::{HEAD_STEP_PX, Layout, PatchGeometry, tile_box, tile_step_px};
pub use model::{Model, ModelKey};
pub use target::{Changed, FrameRequest, Rendered, Target};

const SHADER: &str = include_str!("../../../shaders/avatar.wgsl");

/// What the avatar kernels' bind group holds (`shaders/avatar.wgsl`, bindings 0–8; the
/// sampler is the device's).
struct Bindings<'a> {
    uniforms: &'a wgpu::Buffer,
    base: &'a wgpu::Buffer,
    out: &'a wgpu::Buffer,
    layer: &'a wgpu::Buffer,
    caps: &'a wgpu::Buffer,
    head: &'a wgpu::Buffer,
    layer_tex: &'a wgpu::TextureView,
    tiles: &'a wgpu::Buffer,
}

/// Environment a headless process sets before its first thread (the binaries' `main` do):
/// Mesa's implicit Vulkan layer `VK_LAYER_MESA_device_select` otherwise connects to Wayland
/// and X11 while the adapters are listed, to learn the desktop's default GPU, and on a
/// server prints `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` twice.
/// The layer only reorders adapters; [`Gpu::new`] ranks them itself (discrete first). A
/// value already set by the operator is kept.
pub const HEADLESS_ENV: [(&str, &str); 1] = [("NODEVICE_SELECT", "1")];
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
    sampler: wgpu::Sampler,
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
                wgpu::BindGroupLayoutEntry {
                    binding: 6,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Float { filterable: true },
                        view_dimension: wgpu::TextureViewDimension::D2,
                        multisampled: false,
                    },
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 7,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Sampler(wgpu::SamplerBindingType::Filtering),
                    count: None,
                },
                storage(8, true),
            ],
        });
        // The head layer is sampled bilinearly where the pose moves it: the texture unit's
        // filter (lavapipe's 8-bit fast path; hardware on a GPU) instead of four loads and
        // the arithmetic in the kernel.
        let sampler = device.create_sampler(&wgpu::SamplerDescriptor {
            label: Some("head layer"),
            address_mode_u: wgpu::AddressMode::ClampToEdge,
            address_mode_v: wgpu::AddressMode::ClampToEdge,
            mag_filter: wgpu::FilterMode::Linear,
            min_filter: wgpu::FilterMode::Linear,
            ..Default::default()
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
            sampler,
        })
    }

    /// A texture of the head layer's pixels (RGBA8, premultiplied, `width` × `height`), for
    /// the kernels to sample.
    fn layer_texture(&self, width: u32, height: u32, px: &[u8]) -> wgpu::TextureView {
        let size = wgpu::Extent3d {
            width: width.max(1),
            height: height.max(1),
            depth_or_array_layers: 1,
        };
        let texture = self.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("head layer"),
            size,
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba8Unorm,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let want = size.width as usize * size.height as usize * 4;
        let zeros;
        let data = if px.len() == want {
            px
        } else {
            zeros = vec![0u8; want];
            &zeros
        };
        self.queue.write_texture(
            texture.as_image_copy(),
            data,
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(size.width * 4),
                rows_per_image: Some(size.height),
            },
            size,
        );
        texture.create_view(&Default::default())
    }

    /// `true` on a CPU device (lavapipe): converting the changed boxes on the CPU is then
    /// cheaper than [`i420`]'s whole-frame kernel (measured by `reelgen-bench generate`).
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

    fn bind_group(&self, b: Bindings<'_>) -> wgpu::BindGroup {
        let Bindings {
            uniforms,
            base,
            out,
            layer,
            caps,
            head,
            layer_tex,
            tiles,
        } = b;
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
                wgpu::BindGroupEntry {
                    binding: 6,
                    resource: wgpu::BindingResource::TextureView(layer_tex),
                },
                wgpu::BindGroupEntry {
                    binding: 7,
                    resource: wgpu::BindingResource::Sampler(&self.sampler),
                },
                entry(8, tiles),
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

#[cfg(test)]
mod tests {
    use super::layout::{PoseMap, span_tiles};
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
        let head = layout.head_box.map(|v| v as f32);
        let shift = |a: [f32; 4], b: [f32; 4]| {
            PoseMap::new(a, &layout)
                .shift2(&PoseMap::new(b, &layout), head, &layout)
                .sqrt()
        };
        let rest = [0.0, 0.0, 0.0, 0.5];
        assert_eq!(shift(rest, rest), 0.0);
        // Breathing moves the head 0.006 units per unit of breath: 0.36 px at full breath.
        let breath = shift(rest, [0.0, 0.0, 0.0, 1.5]);
        assert!((breath - 0.006 * layout.scale).abs() < 1e-3, "{breath}");
        let small = shift(rest, [0.001, 0.0, 0.0, 0.5]);
        let large = shift(rest, [0.01, 0.0, 0.0, 0.5]);
        assert!(small < HEAD_STEP_PX && large > small * 5.0);
        let roll = shift(rest, [0.0, 0.0, 0.01, 0.5]);
        assert!(
            roll > 1.0,
            "a 0.01 rad roll moves the top of the box by pixels: {roll}"
        );
        // Roll turns about the neck: a tile at the chin moves much less than one at the top.
        let [hx, hy, bw, _] = layout.head_box.map(|v| v as f32);
        let (a, b) = (
            PoseMap::new(rest, &layout),
            PoseMap::new([0.0, 0.0, 0.01, 0.5], &layout),
        );
        let top = a.shift2(&b, [hx + bw / 2.0, hy, 8.0, 8.0], &layout).sqrt();
        let chin = a.shift2(
            &b,
            [hx + bw / 2.0, layout.cy + 0.4 * layout.scale, 8.0, 8.0],
            &layout,
        );
        assert!(chin.sqrt() < top / 4.0, "chin {} top {top}", chin.sqrt());
    }

    #[test]
    fn smooth_tiles_get_longer_steps_than_sharp_ones() {
        assert_eq!(tile_step_px(0), 2.0);
        assert_eq!(tile_step_px(2), 1.0);
        assert_eq!(tile_step_px(3), HEAD_STEP_PX);
        // A layer that is flat on the left and has a hard edge on the right.
        let layout = Layout::new(1280, 720, false);
        let [_, _, bw, bh] = layout.head_box;
        let mut layer = vec![0u8; (bw * bh * 4) as usize];
        for y in 0..bh {
            for x in bw / 2..bw {
                let i = ((y * bw + x) * 4) as usize;
                layer[i..i + 4].copy_from_slice(&[200, 150, 120, 255]);
            }
        }
        let (left, edge) = (1u32 | 5 << 16, (bw / 2 / WG) | 5 << 16);
        let judged = layout::HeadTile::judge(&[left, edge], &layer, &layout);
        assert_eq!(judged[0].step2, 4.0, "flat");
        assert_eq!(judged[1].step2, HEAD_STEP_PX * HEAD_STEP_PX, "edge");
        // Without the layer's pixels every tile is sharp.
        let blind = layout::HeadTile::judge(&[left], &[], &layout);
        assert_eq!(blind[0].step2, HEAD_STEP_PX * HEAD_STEP_PX);
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
