//! Where things are in a frame: the avatar's [`Layout`] (head, eyes and mouth boxes), the
//! 8×8 tiles ([`HeadTile`]) and row spans the moving head can reach, the pose as an affine
//! map ([`PoseMap`]) and how far a tile may move before it is recomposited
//! ([`tile_step_px`]), and the [`PatchGeometry`] that writes a read-back patch into a whole
//! frame.

use super::WG;
use crate::render::timeline::script::FrameParams;

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
            // Brows reach y −0.15, lids and creases ±0.18 across; the lips at the widest,
            // smiling and most open span ±0.14 and y 0.11–0.32; 0.03 for pose shifts.
            eyes_box: pixels([-0.22, -0.19, 0.22, 0.055]),
            mouth_box: pixels([-0.18, 0.075, 0.18, 0.36]),
        }
    }
}

impl Layout {
    /// The part of the mouth box the mouth of `frame` can touch at `pose` (its pose map):
    /// outside it every shape of the kernel's `mouth` has zero coverage, so drawing only
    /// there gives the same pixels as the whole box. A closed or half-open mouth is a
    /// fraction of the box, which is sized for the widest, most open, turned mouth.
    pub fn mouth_extent(&self, frame: &FrameParams, pose: &PoseMap) -> [u32; 4] {
        // As `mouth` in shaders/avatar.wgsl: widths, heights and centre in face units.
        let smile = frame.smile;
        let (joy, stern) = (smile.max(0.0), (-smile).max(0.0));
        let mw = 0.085
            * (1.0 + 0.28 * frame.mouth_wide - 0.3 * frame.mouth_round)
            * (1.0 + 0.14 * joy - 0.08 * stern);
        let mh = 0.004 + 0.07 * frame.mouth_open;
        let mc = 0.205 + 0.02 * frame.mouth_open;
        // Coverage is clamp(0.5 − d / pixel): an ellipse (radii r) covers nothing where its
        // distance (k − 1)·min(r) reaches half a pixel, so nothing beyond k = 1 + h / min(r).
        let h = 0.5 / self.scale.max(1e-6);
        let reach = |rx: f32, ry: f32| {
            let k = 1.0 + h / rx.min(ry).max(1e-6);
            (k * rx, k * ry)
        };
        let (ix, iy) = reach(mw, mh);
        let lips_ry = mh + 0.016 - 0.007 * stern + 0.004 * frame.mouth_round;
        let (lx, ly) = reach(mw + 0.012, lips_ry);
        // The closed-lip line: |m.x| < mw, |m.y| < 0.0022, each plus half a pixel.
        let x = ix.max(lx).max(mw + h);
        let (y0, y1) = ((-iy).min(0.002 - ly), iy.max(0.002 + ly).max(0.0022 + h));
        // The smile bends m.y by smile·(0.05·x²/mw² − 0.008) (face.y = m.y + mc − that).
        let bend = [
            -0.008 * smile,
            smile * (0.05 * x * x / (mw * mw).max(1e-6) - 0.008),
        ];
        let (b0, b1) = (bend[0].min(bend[1]), bend[0].max(bend[1]));
        let face = [-x, mc + y0 - b1, x, mc + y1 - b0];
        self.clip_face_box(face, frame, pose, self.mouth_box)
    }

    /// The part of the eyes box the eyes and brows of `frame` can touch at `pose`, as
    /// [`Self::mouth_extent`] (from `eyes` in shaders/avatar.wgsl): the box is sized for
    /// raised brows, a turned head and a stern crease; one frame's eyes need about half.
    pub fn eyes_extent(&self, frame: &FrameParams, pose: &PoseMap) -> [u32; 4] {
        let h = 0.5 / self.scale.max(1e-6);
        // Each eye (centre ±0.115, −0.03): its ellipse, with lids and lashes up to 0.006
        // outside it; the crease's ellipse (centre y −0.036) up to 0.002 outside.
        let (ex, ey) = (0.062f32, 0.034 - 0.004 * frame.smile);
        let k = 1.0 + (0.006 + h) / ex.min(ey).max(1e-6);
        let kc = 1.0 + (0.002 + h) / 0.046;
        let mut x = 0.115 + (k * ex).max(kc * 0.066);
        let mut y0 = (-0.03 - k * ey).min(-0.036 - kc * 0.046);
        let mut y1 = (-0.03 + k * ey).max(-0.036 + kc * 0.046);
        // Brows: capsules (radius 0.013) through a, their middle and b.
        let (up, down) = (frame.brow.max(0.0), (-frame.brow).max(0.0));
        let by = -0.105 - 0.03 * frame.brow;
        let a = (0.065 - 0.01 * down, by - 0.01 * up + 0.024 * down);
        let b = (0.165, by - 0.008 - 0.012 * up + 0.004 * down);
        let mid = ((a.0 + b.0) * 0.5, (a.1 + b.1) * 0.5 - 0.008 * up);
        let r = 0.013 + h;
        for (px, py) in [a, b, mid] {
            x = x.max(px + r);
            y0 = y0.min(py - r);
            y1 = y1.max(py + r);
        }
        // The crease between lowered brows (drawn from 0.15 down on).
        if down > 0.15 {
            x = x.max(0.028 + 0.0025 + h);
            y0 = y0.min(-0.085 - 0.0025 - h);
            y1 = y1.max(-0.05 + 0.0025 + h);
        }
        self.clip_face_box([-x, y0, x, y1], frame, pose, self.eyes_box)
    }

    /// The frame pixels of a box in face units (`[x0, y0, x1, y1]`) at `pose`, one pixel
    /// wider all round, within `limit` (`[x, y, w, h]`).
    fn clip_face_box(
        &self,
        [fx0, fy0, fx1, fy1]: [f32; 4],
        frame: &FrameParams,
        pose: &PoseMap,
        limit: [u32; 4],
    ) -> [u32; 4] {
        // face = posed(px) − (0.1·yaw, 0.12·pitch); posed(px) = m·px + t.
        let (ox, oy) = (0.1 * frame.yaw, 0.12 * frame.pitch);
        let [a, b, c, d] = pose.m;
        let det = a * d - b * c;
        if det.abs() < 1e-12 {
            return limit;
        }
        let to_px = |(fx, fy): (f32, f32)| {
            let (u, v) = (fx + ox - pose.t[0], fy + oy - pose.t[1]);
            ((d * u - b * v) / det, (a * v - c * u) / det)
        };
        let corners = [(fx0, fy0), (fx1, fy0), (fx0, fy1), (fx1, fy1)].map(to_px);
        let lo = |k: fn(&(f32, f32)) -> f32| corners.iter().map(k).fold(f32::MAX, f32::min);
        let hi = |k: fn(&(f32, f32)) -> f32| corners.iter().map(k).fold(f32::MIN, f32::max);
        let [lx, ly, lw, lh] = limit;
        let x0 = ((lo(|p| p.0) - 1.0).floor().max(lx as f32) as u32).min(lx + lw);
        let y0 = ((lo(|p| p.1) - 1.0).floor().max(ly as f32) as u32).min(ly + lh);
        let x1 = ((hi(|p| p.0) + 1.0).ceil().max(0.0) as u32).clamp(x0, lx + lw);
        let y1 = ((hi(|p| p.1) + 1.0).ceil().max(0.0) as u32).clamp(y0, ly + lh);
        [x0, y0, x1 - x0, y1 - y0]
    }
}

/// The smallest box holding both `a` and `b` (`[x, y, w, h]`; an empty one adds nothing).
pub fn union_box(a: [u32; 4], b: [u32; 4]) -> [u32; 4] {
    if a[2] == 0 || a[3] == 0 {
        return b;
    }
    if b[2] == 0 || b[3] == 0 {
        return a;
    }
    let (x0, y0) = (a[0].min(b[0]), a[1].min(b[1]));
    let (x1, y1) = (
        (a[0] + a[2]).max(b[0] + b[2]),
        (a[1] + a[3]).max(b[1] + b[3]),
    );
    [x0, y0, x1 - x0, y1 - y0]
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

    /// The boxes a patch covers: the head, then the caption box.
    pub fn boxes(&self) -> impl Iterator<Item = [u32; 4]> {
        std::iter::once(self.head).chain(self.caption)
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
        for [x, y, w, h] in self.boxes() {
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

/// A sharp tile of the head is recomposited once the pose would move some pixel of it by
/// this much; until then frames reuse its composite. Idle motion moves ~0.1 px per frame at
/// 720p, so this halves or better the per-frame composite while no motion step is ever
/// visible.
pub const HEAD_STEP_PX: f32 = 0.25;

/// How far the pose may move a tile of the head before it is recomposited, by how sharp the
/// tile is (`detail`: the largest step in levels between neighbouring pixels around it,
/// [`tile_detail`]): a pixel there changes by at most `detail` levels per pixel of motion,
/// so a smooth tile (the skin's soft shading) held for 1 px is within 2 levels of its exact
/// pose and a flat one for 2 px is exact; edges and strands keep [`HEAD_STEP_PX`].
pub fn tile_step_px(detail: u32) -> f32 {
    match detail {
        0 => 2.0,
        1..=2 => 1.0,
        _ => HEAD_STEP_PX,
    }
}

/// How far around a tile its detail is measured: a bilinear sample up to the largest step
/// away reads pixels one further.
const DETAIL_REACH: usize = 3;

/// The `posed` mapping of a pose (yaw, pitch, roll, breath) as an affine map of frame
/// pixels to head units: breathing bob, roll about the neck (0.45 below the head centre), a
/// small shift for yaw and pitch — `posed(px) = m · px + t`. The kernels get it in their
/// uniforms; the head's tiles compare two of them to learn how far a pose change moves them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoseMap {
    /// Rows of the matrix: m00, m01, m10, m11.
    pub m: [f32; 4],
    pub t: [f32; 2],
}

impl PoseMap {
    pub fn new(pose: [f32; 4], layout: &Layout) -> Self {
        Self::around(pose, layout.scale, layout.cx, layout.cy)
    }

    /// The map for a head of `scale` pixels per unit centred at (`cx`, `cy`).
    pub fn around([yaw, pitch, roll, breath]: [f32; 4], scale: f32, cx: f32, cy: f32) -> Self {
        let s = scale.max(1e-6);
        let (sr, cr) = (-roll).sin_cos();
        // R · ((px − c)/s + (0, 0.006·breath − 0.45)) + (−0.06·yaw, 0.45 − 0.05·pitch)
        let (qx, qy) = (-cx / s, -cy / s + 0.006 * breath - 0.45);
        Self {
            m: [cr / s, -sr / s, sr / s, cr / s],
            t: [
                cr * qx - sr * qy - 0.06 * yaw,
                sr * qx + cr * qy + 0.45 - 0.05 * pitch,
            ],
        }
    }

    /// How far (layer pixels) going from `self` to `other` moves the sample of the farthest
    /// corner of the box `[x, y, w, h]` (frame pixels), squared.
    pub fn shift2(&self, other: &Self, [x, y, w, h]: [f32; 4], layout: &Layout) -> f32 {
        let dm = [0, 1, 2, 3].map(|k| other.m[k] - self.m[k]);
        let (dx, dy) = (
            dm[0] * x + dm[1] * y + other.t[0] - self.t[0],
            dm[2] * x + dm[3] * y + other.t[1] - self.t[1],
        );
        let corner = |(a, b): (f32, f32)| {
            let (ex, ey) = (dx + dm[0] * a + dm[1] * b, dy + dm[2] * a + dm[3] * b);
            ex * ex + ey * ey
        };
        let far = [(0.0, 0.0), (w, 0.0), (0.0, h), (w, h)]
            .into_iter()
            .map(corner)
            .fold(0.0, f32::max);
        far * layout.scale * layout.scale
    }
}

/// An 8×8 tile of the head box the moving head can reach: where it is (packed `x | y << 16`,
/// in tiles), its top-left corner in frame pixels and its step squared ([`tile_step_px`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadTile {
    pub at: u32,
    pub corner: [f32; 2],
    pub step2: f32,
}

impl HeadTile {
    /// `tiles` (from [`span_tiles`]) with their steps, judged on the head `layer`'s pixels
    /// (premultiplied RGBA, head-box sized; without them every tile is sharp).
    pub fn judge(tiles: &[u32], layer: &[u8], layout: &Layout) -> Vec<Self> {
        let [hx, hy, bw, bh] = layout.head_box;
        let have = layer.len() >= bw as usize * bh as usize * 4;
        tiles
            .iter()
            .map(|&at| {
                let step = if have {
                    tile_step_px(tile_detail(layer, at, layout))
                } else {
                    HEAD_STEP_PX
                };
                let [x, y, ..] = tile_box([hx, hy], at);
                Self {
                    at,
                    corner: [x as f32, y as f32],
                    step2: step * step,
                }
            })
            .collect()
    }

    /// The tile as a box in frame pixels.
    pub fn frame_box(&self) -> [f32; 4] {
        [self.corner[0], self.corner[1], WG as f32, WG as f32]
    }
}

/// The frame pixels (`[x, y, w, h]`) of the head tile `at` (packed `x | y << 16`, in tiles)
/// of a head box whose top-left corner is `origin`.
pub fn tile_box(origin: [u32; 2], at: u32) -> [u32; 4] {
    [
        origin[0] + (at & 0xffff) * WG,
        origin[1] + (at >> 16) * WG,
        WG,
        WG,
    ]
}

/// How sharp the tile `at` is: the largest change, in levels, between two neighbouring
/// pixels (across or down) of the head layer within [`DETAIL_REACH`] pixels of it — the
/// most a pixel there can change per pixel the head moves (colour and coverage changes
/// added: over `base`, a coverage step of k levels changes the result by at most k).
fn tile_detail(layer: &[u8], at: u32, layout: &Layout) -> u32 {
    let [_, _, bw, bh] = layout.head_box;
    let (bw, bh, wg, r) = (bw as usize, bh as usize, WG as usize, DETAIL_REACH);
    let px = |x: usize, y: usize| -> [i32; 4] {
        let i = (y * bw + x) * 4;
        layer
            .get(i..i + 4)
            .map_or([0; 4], |p| [p[0], p[1], p[2], p[3]].map(i32::from))
    };
    let step = |a: [i32; 4], b: [i32; 4]| {
        let rgb = (0..3).map(|k| (a[k] - b[k]).abs()).max().unwrap_or(0);
        (rgb + (a[3] - b[3]).abs()) as u32
    };
    let (tx, ty) = ((at & 0xffff) as usize * wg, (at >> 16) as usize * wg);
    let (x0, y0) = (tx.saturating_sub(r), ty.saturating_sub(r));
    let (x1, y1) = ((tx + wg + r).min(bw), (ty + wg + r).min(bh));
    let mut d = 0;
    for y in y0..y1 {
        for x in x0..x1 {
            let p = px(x, y);
            if x + 1 < x1 {
                d = d.max(step(p, px(x + 1, y)));
            }
            if y + 1 < y1 {
                d = d.max(step(p, px(x, y + 1)));
            }
        }
    }
    d
}

/// The 8×8 tiles of the head box that meet `spans` (two per row), packed `x | y << 16`.
pub(super) fn span_tiles(spans: &[u32], layout: &Layout) -> Vec<u32> {
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
pub(super) fn row_spans(px: &[u32], layout: &Layout) -> Vec<u32> {
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
