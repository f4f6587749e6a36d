// i420.wgsl — RGBA8 → I420 (limited range, BT.709 or BT.601 as GStreamer assumes for the
// height), for devices where converting whole frames on the GPU beats converting only the
// changed boxes on the CPU (a real GPU may; on lavapipe it does not: see `reelgen-bench
// generate`).
//
// Inputs:  @group(0) @binding(0) uniform S: frame width, height (width a multiple of 8,
//          height even), matrix (0 BT.709, 1 BT.601).
//          @binding(1) storage `rgba`: RGBA8 (packed u32), width × height.
// Outputs: @binding(2) storage `yuv`: the I420 planes back to back as bytes — Y (width ×
//          height), then U and V (width/2 × height/2 each) — packed four per u32.
// Entry point `rgba_to_i420` (workgroup 8×8): one invocation per 8×2 block of pixels, which
//          makes whole words of every plane (two of Y per row, one of U, one of V).
// Colour: the frame's sRGB values are used as they are (no linearisation), as video
//          encoders expect: Y = 16 + 219·(Kr R + Kg G + Kb B), Cb/Cr = 128 + 224·(…); each
//          chroma sample averages its 2×2 pixels (as `src/render/media/i420.rs` does).

struct S {
    size: vec4u,
};

@group(0) @binding(0) var<uniform> s: S;
@group(0) @binding(1) var<storage, read> rgba: array<u32>;
@group(0) @binding(2) var<storage, read_write> yuv: array<u32>;

// Y, Cb and Cr weights of the matrix: BT.709 (Kr 0.2126, Kb 0.0722) or BT.601 (0.299, 0.114).
fn weights_y() -> vec3f {
    return select(vec3f(0.2126, 0.7152, 0.0722), vec3f(0.299, 0.587, 0.114), s.size.z == 1u);
}
fn weights_cb() -> vec3f {
    return select(vec3f(-0.1146, -0.3854, 0.5), vec3f(-0.168736, -0.331264, 0.5), s.size.z == 1u);
}
fn weights_cr() -> vec3f {
    return select(vec3f(0.5, -0.4542, -0.0458), vec3f(0.5, -0.418688, -0.081312), s.size.z == 1u);
}

fn luma(c: vec3f) -> f32 {
    return 16.0 + 219.0 * dot(c, weights_y());
}

fn byte(v: f32) -> u32 {
    return u32(clamp(round(v), 0.0, 255.0));
}

@compute @workgroup_size(8, 8, 1)
fn rgba_to_i420(@builtin(global_invocation_id) gid: vec3u) {
    let w = s.size.x;
    let h = s.size.y;
    let x0 = gid.x * 8u;
    let y0 = gid.y * 2u;
    if (x0 >= w || y0 >= h) { return; }
    var cb = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    var cr = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var r = 0u; r < 2u; r = r + 1u) {
        let row = (y0 + r) * w + x0;
        for (var half = 0u; half < 2u; half = half + 1u) {
            var word = 0u;
            for (var i = 0u; i < 4u; i = i + 1u) {
                let k = half * 4u + i;
                let c = unpack4x8unorm(rgba[row + k]).rgb;
                word = word | (byte(luma(c)) << (8u * i));
                let j = k / 2u;
                cb[j] = cb[j] + dot(c, weights_cb());
                cr[j] = cr[j] + dot(c, weights_cr());
            }
            yuv[(row + half * 4u) / 4u] = word;
        }
    }
    var u = 0u;
    var v = 0u;
    for (var j = 0u; j < 4u; j = j + 1u) {
        u = u | (byte(128.0 + 224.0 * cb[j] * 0.25) << (8u * j));
        v = v | (byte(128.0 + 224.0 * cr[j] * 0.25) << (8u * j));
    }
    let chroma = (y0 / 2u) * (w / 2u) + x0 / 2u;
    yuv[(w * h + chroma) / 4u] = u;
    yuv[(w * h + (w / 2u) * (h / 2u) + chroma) / 4u] = v;
}
