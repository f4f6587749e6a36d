//! The kernels' ABI: [`Style`] (an avatar look's colours and shapes) and the per-frame
//! uniform block, laid out as `shaders/avatar.wgsl` reads them, and colour parsing.

use bytemuck::{Pod, Zeroable};

use super::layout::*;
use crate::render::timeline::script::FrameParams;

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
pub(super) struct Uniforms {
    pub(super) frame: FrameParams,
    pub(super) style: Style,
    pub(super) size: [f32; 4],
    pub(super) center: [f32; 4],
    pub(super) boxsz: [u32; 4],
    pub(super) ebox: [u32; 4],
    pub(super) mbox: [u32; 4],
    pub(super) cbox: [u32; 4],
    pub(super) cword: [f32; 4],
    /// `posed` as an affine map of frame pixels to head units, from `frame`'s pose (kept
    /// in step by [`Uniforms::set_frame`]): rows of the matrix, then the offset.
    pub(super) pose_m: [f32; 4],
    pub(super) pose_t: [f32; 4],
}

impl Uniforms {
    pub(super) fn new(
        frame: FrameParams,
        style: Style,
        width: u32,
        height: u32,
        layout: &Layout,
        captions: Option<[u32; 4]>,
    ) -> Self {
        let mut u = Self {
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
            pose_m: [0.0; 4],
            pose_t: [0.0; 4],
        };
        u.set_frame(frame);
        u
    }

    /// Sets the frame's drive and the pose map the kernels use for it: breathing bob, roll
    /// about the neck (0.45 below the head centre), a small shift for yaw and pitch —
    /// `posed(px) = M · px + t`, computed once here instead of per pixel.
    pub(super) fn set_frame(&mut self, frame: FrameParams) {
        self.frame = frame;
        let pose = [frame.yaw, frame.pitch, frame.roll, frame.breath];
        let map = PoseMap::around(pose, self.size[2], self.center[0], self.center[1]);
        self.pose_m = map.m;
        self.pose_t = [map.t[0], map.t[1], 0.0, 0.0];
    }
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
