//! I420 on the CPU: frames are born I420. A job converts its static frame once and then, per
//! frame, only the boxes that change (head and caption patches, widened to whole chroma
//! samples) straight into a pooled I420 buffer that GStreamer takes without a copy.
//!
//! The colour matrix is the one GStreamer assumes for I420 caps without colorimetry (and so
//! the one `videoconvert` used and x264 signals): BT.709 above 576 lines, BT.601 at or below;
//! limited range, the frame's sRGB values used as they are, each chroma sample the mean of
//! its 2×2 pixels. Fixed point with 16 fractional bits, rounded: within one level of the
//! floating-point [`reference`].

/// The Y′CbCr matrix of a frame size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matrix {
    Bt601,
    Bt709,
}

impl Matrix {
    /// GStreamer's default for a frame `height` lines tall.
    pub fn for_height(height: u32) -> Self {
        if height > 576 {
            Self::Bt709
        } else {
            Self::Bt601
        }
    }

    /// The caps' `colorimetry` value that says so.
    pub fn colorimetry(self) -> &'static str {
        match self {
            Self::Bt601 => "bt601",
            Self::Bt709 => "bt709",
        }
    }

    /// (Kr, Kb) of the matrix.
    pub fn weights(self) -> (f64, f64) {
        match self {
            Self::Bt601 => (0.299, 0.114),
            Self::Bt709 => (0.2126, 0.0722),
        }
    }
}

/// Integer coefficients of one matrix: Y from one pixel, Cb/Cr from the sum of four.
#[derive(Debug, Clone, Copy)]
struct Coeffs {
    y: [i32; 3],
    u: [i32; 3],
    v: [i32; 3],
}

const FRAC: u32 = 16;

impl Coeffs {
    fn of(m: Matrix) -> Self {
        let (kr, kb) = m.weights();
        let kg = 1.0 - kr - kb;
        let q = |x: f64| (x * f64::from(1u32 << FRAC)).round() as i32;
        let ys = 219.0 / 255.0;
        let cs = 224.0 / 255.0;
        // Cb = (B − Y′) / (2 (1 − Kb)), Cr = (R − Y′) / (2 (1 − Kr)).
        let cb = 0.5 / (1.0 - kb);
        let cr = 0.5 / (1.0 - kr);
        Self {
            y: [q(ys * kr), q(ys * kg), q(ys * kb)],
            u: [q(-cs * cb * kr), q(-cs * cb * kg), q(cs * cb * (1.0 - kb))],
            v: [q(cs * cr * (1.0 - kr)), q(-cs * cr * kg), q(-cs * cr * kb)],
        }
    }
}

/// Bytes of an I420 frame.
pub fn frame_bytes(width: u32, height: u32) -> usize {
    let (w, h) = (width as usize, height as usize);
    w * h + 2 * (w / 2) * (h / 2)
}

/// `[x, y, w, h]` widened to even edges (whole chroma samples), inside the frame.
pub fn even_box([x, y, w, h]: [u32; 4], width: u32, height: u32) -> [u32; 4] {
    let x0 = x.min(width) & !1;
    let y0 = y.min(height) & !1;
    let x1 = (x.saturating_add(w).min(width) + 1) & !1;
    let y1 = (y.saturating_add(h).min(height) + 1) & !1;
    [
        x0,
        y0,
        x1.min(width & !1).saturating_sub(x0),
        y1.min(height & !1).saturating_sub(y0),
    ]
}

/// A whole RGBA frame (`width` × `height`, both even) as I420.
pub fn from_rgba(rgba: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut out = vec![0u8; frame_bytes(width, height)];
    convert_box(rgba, width, height, [0, 0, width, height], &mut out);
    out
}

/// Converts the box `[x, y, w, h]` of the RGBA frame `rgba` (`width` × `height`) into the
/// same box of the I420 frame `dst`; the box is widened to even edges first. Does nothing
/// when the buffers do not hold frames of that size.
pub fn convert_box(rgba: &[u8], width: u32, height: u32, bx: [u32; 4], dst: &mut [u8]) {
    let [x, y, w, h] = even_box(bx, width, height).map(|v| v as usize);
    let (fw, fh) = (width as usize, height as usize);
    if rgba.len() != fw * fh * 4 || dst.len() != frame_bytes(width, height) || w == 0 || h == 0 {
        return;
    }
    let c = Coeffs::of(Matrix::for_height(height));
    let (luma, chroma) = dst.split_at_mut(fw * fh);
    let (u_plane, v_plane) = chroma.split_at_mut((fw / 2) * (fh / 2));
    let cw = fw / 2;
    let y_round = (16 << FRAC) + (1 << (FRAC - 1));
    let c_round = (128 << (FRAC + 2)) + (1 << (FRAC + 1));
    for row in (y..y + h).step_by(2) {
        let src0 = &rgba[(row * fw + x) * 4..(row * fw + x + w) * 4];
        let src1 = &rgba[((row + 1) * fw + x) * 4..((row + 1) * fw + x + w) * 4];
        let (top, bottom) = luma[row * fw..(row + 2) * fw].split_at_mut(fw);
        let (y0, y1) = (&mut top[x..x + w], &mut bottom[x..x + w]);
        let at = (row / 2) * cw + x / 2;
        let (us, vs) = (&mut u_plane[at..at + w / 2], &mut v_plane[at..at + w / 2]);
        let pairs = src0
            .chunks_exact(8)
            .zip(src1.chunks_exact(8))
            .zip(y0.chunks_exact_mut(2).zip(y1.chunks_exact_mut(2)))
            .zip(us.iter_mut().zip(vs.iter_mut()));
        for (((a, b), (ya, yb)), (u, v)) in pairs {
            let px = |p: &[u8]| [i32::from(p[0]), i32::from(p[1]), i32::from(p[2])];
            let quad = [px(&a[..4]), px(&a[4..]), px(&b[..4]), px(&b[4..])];
            let luma = |[r, g, b]: [i32; 3]| {
                ((c.y[0] * r + c.y[1] * g + c.y[2] * b + y_round) >> FRAC) as u8
            };
            ya[0] = luma(quad[0]);
            ya[1] = luma(quad[1]);
            yb[0] = luma(quad[2]);
            yb[1] = luma(quad[3]);
            let sum = |k: usize| quad[0][k] + quad[1][k] + quad[2][k] + quad[3][k];
            let (r, g, b) = (sum(0), sum(1), sum(2));
            let chroma = |k: [i32; 3]| {
                ((k[0] * r + k[1] * g + k[2] * b + c_round) >> (FRAC + 2)).clamp(0, 255) as u8
            };
            *u = chroma(c.u);
            *v = chroma(c.v);
        }
    }
}

/// Peak signal-to-noise ratio of two frames of the same size, in dB (infinite when equal).
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let se: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| {
            let d = f64::from(*x) - f64::from(*y);
            d * d
        })
        .sum();
    let mse = se / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    }
}

/// The conversion in floating point (the matrix for `height`), as a reference for both
/// converters.
pub fn reference(rgba: &[u8], width: usize, height: usize) -> Vec<u8> {
    let (kr, kb) = Matrix::for_height(height as u32).weights();
    let kg = 1.0 - kr - kb;
    let (cb, cr) = (0.5 / (1.0 - kb), 0.5 / (1.0 - kr));
    let px = |x: usize, y: usize| {
        let i = (y * width + x) * 4;
        [
            f64::from(rgba[i]) / 255.0,
            f64::from(rgba[i + 1]) / 255.0,
            f64::from(rgba[i + 2]) / 255.0,
        ]
    };
    let byte = |v: f64| v.round().clamp(0.0, 255.0) as u8;
    let mut out = Vec::with_capacity(width * height * 3 / 2);
    for y in 0..height {
        for x in 0..width {
            let [r, g, b] = px(x, y);
            out.push(byte(16.0 + 219.0 * (kr * r + kg * g + kb * b)));
        }
    }
    for (wr, wg, wb) in [
        (-cb * kr, -cb * kg, cb * (1.0 - kb)),
        (cr * (1.0 - kr), -cr * kg, -cr * kb),
    ] {
        for y in (0..height).step_by(2) {
            for x in (0..width).step_by(2) {
                let mut acc = 0.0;
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let [r, g, b] = px(x + dx, y + dy);
                    acc += wr * r + wg * g + wb * b;
                }
                out.push(byte(128.0 + 224.0 * acc / 4.0));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(w: u32, h: u32) -> Vec<u8> {
        (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                [(x * 7 + y) as u8, (y * 5) as u8, (x ^ y) as u8, 255]
            })
            .collect()
    }

    #[test]
    fn a_whole_frame_is_within_one_level_of_the_reference_in_both_matrices() {
        for (w, h) in [(64u32, 600u32), (64, 360)] {
            let rgba = pattern(w, h);
            let got = from_rgba(&rgba, w, h);
            let want = reference(&rgba, w as usize, h as usize);
            let worst = got.iter().zip(&want).map(|(a, b)| a.abs_diff(*b)).max();
            assert!(worst <= Some(1), "{w}x{h}: off by {worst:?}");
        }
    }

    #[test]
    fn white_black_and_grey_land_on_the_limited_range_levels() {
        for h in [360u32, 720] {
            let flat = |c: u8| [c, c, c, 255].repeat(16 * h as usize);
            let white = from_rgba(&flat(255), 16, h);
            let black = from_rgba(&flat(0), 16, h);
            let grey = from_rgba(&flat(128), 16, h);
            let luma = 16 * h as usize;
            assert_eq!((white[0], black[0]), (235, 16), "height {h}");
            assert_eq!((white[luma], white[frame_bytes(16, h) - 1]), (128, 128));
            assert_eq!((grey[luma], grey[frame_bytes(16, h) - 1]), (128, 128));
        }
        // Pure red tells the matrices apart (videoconvert gives 81 and 62: it truncates).
        let red = |h: u32| from_rgba(&[255, 0, 0, 255].repeat(16 * h as usize), 16, h)[0];
        assert_eq!(red(360), 81);
        assert_eq!(red(720), 63);
    }

    #[test]
    fn converting_the_boxes_that_changed_equals_converting_the_whole_frame() {
        let (w, h) = (96u32, 64u32);
        let before = pattern(w, h);
        let mut after = before.clone();
        // An odd box: its edges share chroma samples with pixels around it.
        let changed = [13u32, 7, 21, 17];
        for y in changed[1]..changed[1] + changed[3] {
            for x in changed[0]..changed[0] + changed[2] {
                let i = ((y * w + x) * 4) as usize;
                after[i..i + 3].copy_from_slice(&[250, 10, 90]);
            }
        }
        let mut frame = from_rgba(&before, w, h);
        convert_box(&after, w, h, changed, &mut frame);
        assert_eq!(frame, from_rgba(&after, w, h));
        assert_eq!(psnr(&frame, &from_rgba(&after, w, h)), f64::INFINITY);
        assert!(psnr(&frame, &from_rgba(&before, w, h)) < 40.0);
    }

    #[test]
    fn boxes_widen_to_even_edges_inside_the_frame() {
        assert_eq!(even_box([13, 7, 21, 17], 96, 64), [12, 6, 22, 18]);
        assert_eq!(even_box([90, 60, 50, 50], 96, 64), [90, 60, 6, 4]);
        assert_eq!(even_box([200, 0, 4, 4], 96, 64), [96, 0, 0, 4]);
    }
}
