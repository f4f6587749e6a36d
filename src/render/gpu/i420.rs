//! RGBA → I420 of whole frames on the device (`shaders/i420.wgsl`, limited range, the matrix
//! GStreamer assumes for the height — as [`crate::render::media::i420`] does on the CPU).
//!
//! The conversion path is chosen per device from measurement ([`ColorPath::choose`]): frames
//! are born I420 on the CPU, only the boxes that changed converted (`Boxes`), unless this
//! kernel converts a whole frame (upload, kernel, readback) faster than the CPU converts
//! one — possible on a real GPU, never on lavapipe (a CPU Vulkan device, where the kernel
//! costs ~11 ms of CPU per 720p frame against well under 1 ms for the boxes).

/// How frames become I420 for the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorPath {
    /// On the CPU, only the boxes that changed this frame, into a pooled I420 frame.
    Boxes,
    /// This kernel on the device, whole frames.
    Kernel,
}

impl ColorPath {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Boxes => "cpu-boxes",
            Self::Kernel => "gpu-kernel",
        }
    }

    /// The faster path on `gpu`: on a real GPU the kernel against the CPU converter, a
    /// 1280×720 frame a few times each (whole frames both, which favours the kernel: the
    /// CPU path converts only the changed boxes); the CPU path on a CPU device.
    pub fn choose(gpu: &Gpu) -> Self {
        if gpu.is_cpu() {
            return Self::Boxes;
        }
        let (w, h, n) = (1280u32, 720u32, 10u32);
        let frame = vec![128u8; (w * h * 4) as usize];
        let kernel = I420Converter::new(gpu, w, h).and_then(|c| {
            c.convert(gpu, &frame)?;
            let t = Instant::now();
            for _ in 0..n {
                c.convert(gpu, &frame)?;
            }
            Ok(t.elapsed())
        });
        let mut out = vec![0u8; crate::render::media::i420::frame_bytes(w, h)];
        let t = Instant::now();
        for _ in 0..n {
            crate::render::media::i420::convert_box(&frame, w, h, [0, 0, w, h], &mut out);
        }
        let cpu = t.elapsed();
        match kernel {
            Ok(k) if k < cpu => Self::Kernel,
            _ => Self::Boxes,
        }
    }
}

use std::time::{Duration, Instant};

use wgpu::util::DeviceExt;

use super::{Gpu, GpuError};

const SHADER: &str = include_str!("../../../shaders/i420.wgsl");

/// A converter for one frame size: its buffers are made once.
pub struct I420Converter {
    width: u32,
    height: u32,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    src: wgpu::Buffer,
    dst: wgpu::Buffer,
    staging: wgpu::Buffer,
}

impl I420Converter {
    /// `width` must be a multiple of 8 and `height` even (whole words in every plane).
    pub fn new(gpu: &Gpu, width: u32, height: u32) -> Result<Self, GpuError> {
        if width == 0 || height == 0 || !width.is_multiple_of(8) || !height.is_multiple_of(2) {
            return Err(GpuError::Device(format!(
                "the I420 kernel needs a width that is a multiple of 8 and an even height, not {width}x{height}"
            )));
        }
        let d = &gpu.device;
        let module = d.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("i420.wgsl"),
            source: wgpu::ShaderSource::Wgsl(SHADER.into()),
        });
        let pipeline = d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("rgba_to_i420"),
            layout: None,
            module: &module,
            entry_point: Some("rgba_to_i420"),
            compilation_options: Default::default(),
            cache: None,
        });
        let px = u64::from(width) * u64::from(height);
        let uniform = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("i420 size"),
            contents: bytemuck::cast_slice(&[
                width,
                height,
                u32::from(
                    crate::render::media::i420::Matrix::for_height(height)
                        == crate::render::media::i420::Matrix::Bt601,
                ),
                0,
            ]),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let src = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("i420 rgba"),
            size: px * 4,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let yuv_bytes = px * 3 / 2;
        let dst = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("i420 planes"),
            size: yuv_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = d.create_buffer(&wgpu::BufferDescriptor {
            label: Some("i420 staging"),
            size: yuv_bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_group = d.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("i420"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: uniform.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: src.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: dst.as_entire_binding(),
                },
            ],
        });
        Ok(Self {
            width,
            height,
            pipeline,
            bind_group,
            src,
            dst,
            staging,
        })
    }

    fn dispatch(&self, enc: &mut wgpu::CommandEncoder) {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(
            (self.width / 8).div_ceil(8),
            (self.height / 2).div_ceil(8),
            1,
        );
    }

    fn wait(gpu: &Gpu, idx: wgpu::SubmissionIndex) -> Result<(), GpuError> {
        gpu.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(idx),
                timeout: None,
            })
            .map(|_| ())
            .map_err(|e| GpuError::Readback(e.to_string()))
    }

    /// Bytes of one converted frame.
    pub fn i420_bytes(&self) -> usize {
        self.dst.size() as usize
    }

    /// Converts one RGBA frame (uploaded, converted, read back): the I420 planes.
    pub fn convert(&self, gpu: &Gpu, rgba: &[u8]) -> Result<Vec<u8>, GpuError> {
        let mut out = vec![0u8; self.i420_bytes()];
        self.convert_into(gpu, rgba, &mut out)?;
        Ok(out)
    }

    /// [`Self::convert`] into `out` (`i420_bytes` long).
    pub fn convert_into(&self, gpu: &Gpu, rgba: &[u8], out: &mut [u8]) -> Result<(), GpuError> {
        if rgba.len() as u64 != self.src.size() || out.len() != self.i420_bytes() {
            return Err(GpuError::Device(
                "frame size does not match the converter".into(),
            ));
        }
        gpu.queue.write_buffer(&self.src, 0, rgba);
        self.run(gpu, |yuv| out.copy_from_slice(yuv))
    }

    /// One conversion of what `src` holds, its I420 read back and handed to `read`.
    fn run(&self, gpu: &Gpu, read: impl FnOnce(&[u8])) -> Result<(), GpuError> {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        self.dispatch(&mut enc);
        enc.copy_buffer_to_buffer(&self.dst, 0, &self.staging, 0, self.dst.size());
        let idx = gpu.queue.submit([enc.finish()]);
        let slice = self.staging.slice(..);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        Self::wait(gpu, idx)?;
        read(
            &slice
                .get_mapped_range()
                .map_err(|e| GpuError::Readback(format!("{e:?}")))?,
        );
        self.staging.unmap();
        Ok(())
    }

    /// Device time of `n` conversions of a frame already on the device, with the I420
    /// readback of each (what a job on this device would pay per frame on this path).
    pub fn time_on_device(&self, gpu: &Gpu, n: u32) -> Result<Duration, GpuError> {
        let t = Instant::now();
        for _ in 0..n {
            self.run(gpu, |_| {})?;
        }
        Ok(t.elapsed())
    }
}
