//! Where things are in a frame: the avatar's [`Layout`] (head, eyes and mouth boxes), the
//! 8×8 tiles and row spans the moving head can reach, the pose step below which the head is
//! not recomposited ([`HEAD_STEP_PX`]), and the [`PatchGeometry`] that writes a read-back
//! patch into a whole frame.

use super::WG;

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

/// The head is recomposited once the pose would move some pixel of it by this much; until
/// then frames reuse the composite (and draw eyes and mouth at the same pose, so they stay
/// exactly on the face). Idle motion moves ~0.1 px per frame at 720p, so this halves or
/// better the per-frame composite while no motion step is ever visible.
pub const HEAD_STEP_PX: f32 = 0.25;

/// How far (pixels) going from pose `a` to pose `b` moves the farthest corner of the head
/// box, by the kernel's `posed` mapping.
pub(super) fn pose_shift_px(a: [f32; 4], b: [f32; 4], layout: &Layout) -> f32 {
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
