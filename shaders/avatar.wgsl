// avatar.wgsl — the talking head and its static layer, as signed-distance shapes.
//
// Inputs:  @group(0) @binding(0) uniform U: frame drive (mouth, blink, gaze, head pose,
//          expression), style (colours, hair style, face shape, background), geometry.
//          @binding(1) storage `base`: RGBA8 (packed u32) static layer, width × height.
// Outputs: @binding(2) storage `out`: RGBA8 (packed u32). For render_base the whole frame
//          (width × height); for the per-frame kernels the frame's patch: the head box
//          (rows of boxsz.x pixels) followed by the caption box (rows of cbox.z pixels).
//          Nothing else of a frame changes, so only the patch is read back and applied to a
//          copy of the static frame on the CPU.
//          @binding(3) storage `layer`: premultiplied RGBA8 head without moving parts,
//          head-box sized, then per row the span of columns the moving head can reach.
//          @binding(5) storage `head`: the composited head (head-box sized), kept between
//          frames: each 8×8 tile recomposited only once the pose has moved it by its step
//          (a quarter pixel where it is sharp, more where it is smooth; chosen on the CPU).
//          @binding(6) texture `layer_tex` and @binding(7) its linear, clamp-to-edge
//          sampler: the head layer's pixels again, which the composite samples bilinearly
//          (the texture unit's filter: hardware on a GPU, lavapipe's 8-bit fast path on a
//          CPU — a third of the composite's cost there against four loads and the mix).
// Entry points (workgroup 8×8, one invocation per pixel):
//   render_base       — whole frame, once per job: background, soft shadow, shoulders, neck.
//   render_head_layer — head box, once per job: hair, ears, shaded face, nose, at rest.
//   composite_head    — head box, a job's first frame: the layer moved by the pose over
//                       `base`, into `head`.
//   composite_tiles   — the frame's list of tiles the pose has moved by their step
//                       (@binding(8) `tiles`, packed x | y << 16).
//   render_eyes       — a small box, every frame: eyes and brows over `head`, into the patch.
//   render_mouth      — a small box, every frame: lips, teeth, tongue over `head`.
//   render_captions   — the caption box, every frame when captions are on: a translucent
//                       panel and the current line's coverage (@binding(4) `caps`, 8-bit,
//                       four pixels per u32), the spoken word highlighted.
// Anti-aliasing: every shape's coverage is clamp(0.5 - d / pixel, 0, 1) on its distance d.

struct U {
    // a: mouth_open, mouth_wide, mouth_round, teeth
    // b: tongue, blink, gaze_x, gaze_y
    // c: yaw, pitch, roll, breath
    // d: smile, brow, time, word
    fa: vec4f, fb: vec4f, fc: vec4f, fd: vec4f,
    skin: vec4f, hair: vec4f, cloth: vec4f, iris: vec4f, lip: vec4f,
    bg0: vec4f, bg1: vec4f,
    // hair_style (0 bob, 1 short, 2 long, 3 swept), face_shape (0 oval, 1 square, 2 heart,
    // 3 round), background kind (0 color, 1 gradient, 2 studio image), gradient angle (rad)
    misc: vec4f,
    // width, height, scale s (pixels per avatar unit), 1/s
    size: vec4f,
    // head centre x, y (pixels), box origin x, y
    center: vec4f,
    // head box width, height, where this frame's tile list starts in `tiles`, unused
    boxsz: vec4u,
    // eyes box and mouth box: x, y, width, height (pixels)
    ebox: vec4u,
    mbox: vec4u,
    // caption box: x, y, width, height (pixels)
    cbox: vec4u,
    // caption: shown (0/1), highlighted word x0, x1 (box pixels), unused
    cword: vec4f,
    // `posed` as an affine map (from the pose in fc, computed on the CPU): matrix rows
    // (m00, m01, m10, m11), then the offset (tx, ty, unused, unused)
    pose_m: vec4f,
    pose_t: vec4f,
};

@group(0) @binding(0) var<uniform> u: U;
@group(0) @binding(1) var<storage, read> base: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<storage, read_write> layer: array<u32>;
@group(0) @binding(4) var<storage, read> caps: array<u32>;
@group(0) @binding(5) var<storage, read_write> head: array<u32>;
@group(0) @binding(6) var layer_tex: texture_2d<f32>;
@group(0) @binding(7) var layer_smp: sampler;
@group(0) @binding(8) var<storage, read> tiles: array<u32>;

fn cover(d: f32) -> f32 {
    // d in avatar units; one pixel is u.size.w units.
    return clamp(0.5 - d / u.size.w, 0.0, 1.0);
}

fn soft(d: f32, width: f32) -> f32 {
    return 1.0 - smoothstep(-width, width, d);
}

fn sd_ellipse(p: vec2f, r: vec2f) -> f32 {
    let k = length(p / r);
    return (k - 1.0) * min(r.x, r.y);
}

fn sd_circle(p: vec2f, r: f32) -> f32 {
    return length(p) - r;
}

fn sd_capsule(p: vec2f, a: vec2f, b: vec2f, r: f32) -> f32 {
    let pa = p - a;
    let ba = b - a;
    let h = clamp(dot(pa, ba) / dot(ba, ba), 0.0, 1.0);
    return length(pa - ba * h) - r;
}

fn sd_box(p: vec2f, b: vec2f, r: f32) -> f32 {
    let q = abs(p) - b + vec2f(r);
    return length(max(q, vec2f(0.0))) + min(max(q.x, q.y), 0.0) - r;
}

// A trapezoid centred on the origin: half-width r1 at y = -he, r2 at y = +he.
fn sd_trapezoid(p: vec2f, r1: f32, r2: f32, he: f32) -> f32 {
    let k1 = vec2f(r2, he);
    let k2 = vec2f(r2 - r1, 2.0 * he);
    let q = vec2f(abs(p.x), p.y);
    let ca = vec2f(q.x - min(q.x, select(r2, r1, q.y < 0.0)), abs(q.y) - he);
    let cb = q - k1 + k2 * clamp(dot(k1 - q, k2) / dot(k2, k2), 0.0, 1.0);
    let s = select(1.0, -1.0, cb.x < 0.0 && ca.y < 0.0);
    return s * sqrt(min(dot(ca, ca), dot(cb, cb)));
}

// A capsule whose radius goes from r0 at `a` to r1 at `b` (close to a distance near the
// surface, which is all the anti-aliasing needs).
fn sd_taper(p: vec2f, a: vec2f, b: vec2f, r0: f32, r1: f32) -> f32 {
    let pa = p - a;
    let ba = b - a;
    let h = clamp(dot(pa, ba) / dot(ba, ba), 0.0, 1.0);
    return length(pa - ba * h) - mix(r0, r1, h);
}

fn smin(a: f32, b: f32, k: f32) -> f32 {
    let h = max(k - abs(a - b), 0.0) / k;
    return min(a, b) - h * h * k * 0.25;
}

// Avatar units, y down, origin at the head centre. The neck widens towards its base.
fn sd_neck(p: vec2f) -> f32 {
    let flare = 1.0 + 0.3 * smoothstep(0.45, 0.74, p.y);
    return sd_box(vec2f(p.x / flare, p.y) - vec2f(0.0, 0.50), vec2f(0.13, 0.24), 0.06);
}

// Chest and arms (a wide rounded box) blended into the trapezius slope up to the neck.
fn sd_torso(p: vec2f) -> f32 {
    let chest = sd_box(p - vec2f(0.0, 1.32), vec2f(0.9, 0.54), 0.3);
    let traps = sd_trapezoid(p - vec2f(0.0, 0.71), 0.17, 0.66, 0.1);
    return smin(chest, traps, 0.12);
}

fn blend(dst: vec3f, src: vec3f, a: f32) -> vec3f {
    return mix(dst, src, a);
}

fn unpack(c: u32) -> vec3f {
    return unpack4x8unorm(c).rgb;
}

fn pack(c: vec3f) -> u32 {
    return pack4x8unorm(vec4f(clamp(c, vec3f(0.0), vec3f(1.0)), 1.0));
}

// Face outline by shape: distance to the head in head-local units (y down).
fn sd_head(q: vec2f) -> f32 {
    let shape = u32(u.misc.y);
    var r = vec2f(0.30, 0.385);
    var p = q;
    if (shape == 1u) { r = vec2f(0.315, 0.375); }
    if (shape == 3u) { r = vec2f(0.325, 0.36); }
    // Jaw taper: narrower towards the chin (less for square, more for heart).
    var taper = 0.16;
    if (shape == 1u) { taper = 0.06; }
    if (shape == 2u) { taper = 0.26; }
    if (shape == 3u) { taper = 0.08; }
    let below = max(p.y, 0.0) / r.y;
    p.x = p.x / (1.0 - taper * below * below);
    var d = sd_ellipse(p, r);
    if (shape == 1u) {
        d = max(d, sd_box(q - vec2f(0.0, 0.02), vec2f(0.30, 0.40), 0.12));
    }
    return d;
}

fn background(px: vec2f) -> vec3f {
    let kind = u32(u.misc.z);
    let uv = px / u.size.xy;
    if (kind == 0u) {
        return u.bg0.rgb;
    }
    if (kind == 1u) {
        let dir = vec2f(sin(u.misc.w), -cos(u.misc.w));
        let t = clamp(dot(uv - vec2f(0.5), dir) + 0.5, 0.0, 1.0);
        return mix(u.bg0.rgb, u.bg1.rgb, t);
    }
    // Studio: vertical gradient with a soft light behind the presenter and a vignette.
    let g = mix(u.bg0.rgb, u.bg1.rgb, uv.y);
    let light = exp(-6.0 * dot(uv - vec2f(0.5, 0.35), uv - vec2f(0.5, 0.35)));
    let vig = 1.0 - 0.35 * dot(uv - vec2f(0.5), uv - vec2f(0.5)) * 2.0;
    return g * vig + vec3f(0.10) * light;
}

@compute @workgroup_size(8, 8, 1)
fn render_base(@builtin(global_invocation_id) gid: vec3u) {
    let w = u32(u.size.x);
    let h = u32(u.size.y);
    if (gid.x >= w || gid.y >= h) { return; }
    let px = vec2f(f32(gid.x) + 0.5, f32(gid.y) + 0.5);
    var c = background(px);
    // Avatar units: origin at the head centre, y down.
    let p = (px - u.center.xy) / u.size.z;

    // Soft shadow on the backdrop.
    let sh = sd_ellipse(p - vec2f(0.05, 1.05), vec2f(0.95, 0.75));
    c = c * (1.0 - 0.28 * soft(sh, 0.25));
    let shh = sd_ellipse(p - vec2f(0.05, 0.03), vec2f(0.34, 0.42));
    c = c * (1.0 - 0.18 * soft(shh, 0.12));

    // Shoulders and torso: a rounded chest with the trapezius rising to the neck, lit from
    // the upper left and darker towards its silhouette so it reads as round.
    let torso = sd_torso(p);
    let light = clamp(0.82 - 0.25 * p.x + 0.12 * (1.0 - p.y), 0.6, 1.05);
    var cloth = u.cloth.rgb * light * (1.0 - 0.14 * smoothstep(-0.18, 0.0, torso));
    c = blend(c, cloth, cover(torso));
    // Neck and a V neckline: the neck runs into the V, the clothes cover it elsewhere. Skin
    // is shaded darker under the jaw and where it meets the cloth.
    let vx = abs(p.x);
    let vneck = max(vx - (0.92 - p.y) * 0.53, 0.6 - p.y);
    let clothed = max(torso, -vneck);
    let skin_d = min(max(sd_neck(p), -clothed), max(torso, vneck));
    let neck_shade = mix(0.72, 0.95, smoothstep(0.34, 0.62, p.y)) * (1.0 - 0.18 * smoothstep(0.58, 0.74, p.y)) * (1.0 + 0.1 * smoothstep(0.74, 0.92, p.y));
    c = blend(c, u.skin.rgb * neck_shade, cover(skin_d));
    // Lapels along the V.
    let lapel = abs(vx - (0.92 - p.y) * 0.53) - 0.014;
    c = blend(c, cloth * 0.7, cover(max(lapel, max(torso, max(0.62 - p.y, p.y - 0.93)))) * 0.8);
    // Fold shading near the arms.
    c = c * (1.0 - 0.12 * smoothstep(0.55, 0.85, vx) * cover(torso));

    out[gid.y * w + gid.x] = pack(c);
}

// Head-local coordinates of a frame pixel under the current pose: breathing bob, roll about
// the neck, a small shift for yaw/pitch.
// (pose_m and pose_t hold this map, computed once per frame on the CPU.)
fn posed(px: vec2f) -> vec2f {
    return vec2f(dot(u.pose_m.xy, px), dot(u.pose_m.zw, px)) + u.pose_t.xy;
}

// Strand shading: fine streaks that follow the hair down and around the head, at two
// irregular frequencies so they never read as stripes.
fn hair_strands(p: vec2f) -> f32 {
    let flow = p.x * (1.0 + 0.6 * max(p.y + 0.1, 0.0));
    let a = sin(flow * 150.0 + 1.5 * sin(p.x * 17.0));
    let b = sin(flow * 410.0 + p.y * 17.0);
    // The fine streaks fade out where a pixel is too coarse to show them (small frames),
    // instead of turning into moiré.
    let fine = clamp(u.size.z / 130.0 - 1.0, 0.0, 1.0);
    return 0.9 + 0.06 * a + 0.04 * b * fine;
}

// Premultiplied "over": paint `col` with coverage `a` on top of `c`.
fn over(c: vec4f, col: vec3f, a: f32) -> vec4f {
    return vec4f(col * a + c.rgb * (1.0 - a), a + c.a * (1.0 - a));
}

// The head without its moving parts (eyes, brows, mouth), at the neutral pose, into `layer`
// (premultiplied RGBA, head-box sized). Once per job.
@compute @workgroup_size(8, 8, 1)
fn render_head_layer(@builtin(global_invocation_id) gid: vec3u) {
    if (gid.x >= u.boxsz.x || gid.y >= u.boxsz.y) { return; }
    let px = vec2f(u.center.z + f32(gid.x) + 0.5, u.center.w + f32(gid.y) + 0.5);
    let head_p = (px - u.center.xy) / u.size.z;
    let face = head_p;
    let smile = u.fd.x;
    let hair_style = u32(u.misc.x);
    var c = vec4f(0.0);

    // Hair behind the head, with strands, darker towards the nape. Long hair falls behind
    // the neck and shoulders: it is cut where they are in front (two pixels inside them, so
    // no seam opens when the head moves).
    let strands = hair_strands(head_p);
    if (hair_style == 0u || hair_style == 2u) {
        var back = sd_ellipse(head_p - vec2f(0.0, -0.06), vec2f(0.39, 0.44));
        if (hair_style == 0u) {
            back = smin(back, sd_box(head_p - vec2f(0.0, 0.06), vec2f(0.36, 0.16), 0.1), 0.04);
        } else {
            back = smin(back, sd_box(head_p - vec2f(0.0, 0.22), vec2f(0.355, 0.42), 0.14), 0.06);
            let m = 2.0 * u.size.w;
            back = max(back, -min(sd_neck(head_p) + m, sd_torso(head_p) + m));
        }
        let depth = 0.62 + 0.16 * (1.0 - smoothstep(-0.2, 0.5, head_p.y));
        c = over(c, u.hair.rgb * depth * strands, cover(back));
    }

    // Ears (hidden under bob and long hair).
    let ears_visible = select(1.0, 0.0, hair_style == 0u || hair_style == 2u);
    for (var s = -1.0; s <= 1.0; s = s + 2.0) {
        let ear = sd_ellipse(head_p - vec2f(s * 0.30, 0.02), vec2f(0.055, 0.085));
        c = over(c, u.skin.rgb * 0.86, cover(ear) * ears_visible);
    }

    // Face with soft shading from a pseudo-normal of the head ellipsoid.
    let dh = sd_head(head_p);
    let q = head_p / vec2f(0.31, 0.39);
    let nz = sqrt(max(1.0 - dot(q, q), 0.0));
    let n = normalize(vec3f(q.x, q.y, nz + 0.35));
    let ldir = normalize(vec3f(-0.45, -0.55, 0.7));
    let diffuse = 0.62 + 0.45 * max(dot(n, ldir), 0.0);
    var skin = u.skin.rgb * diffuse;
    let joy = max(smile, 0.0);
    let sternness = max(-smile, 0.0);
    for (var s = -1.0; s <= 1.0; s = s + 2.0) {
        // Cheeks: a smile lifts and rounds them (blush and a highlight on the apple, higher
        // and fuller the wider the smile); a stern face lets them hang flatter and paler.
        let apple = vec2f(s * 0.165, 0.10 - 0.035 * joy);
        let ch = length(face - apple);
        skin = mix(skin, skin * vec3f(1.05, 0.86, 0.84), (0.22 + 0.4 * joy - 0.15 * sternness) * exp(-ch * ch / (0.006 + 0.003 * joy)));
        let hl = length(face - apple - vec2f(-s * 0.02, -0.02));
        skin = skin + vec3f(0.07) * joy * exp(-hl * hl / 0.0012);
        // Smile lines: faint, from beside the nose down to just outside the mouth corners.
        let fold = sd_capsule(face, vec2f(s * 0.058, 0.125), vec2f(s * 0.128, 0.228), 0.001);
        skin = mix(skin, skin * 0.86, soft(fold, 0.009) * joy);
    }
    let inside = cover(dh);
    // Nose: side shadow, nostrils, tip highlight; chin shadow.
    let nose_side = sd_capsule(face, vec2f(0.028, -0.02), vec2f(0.04, 0.1), 0.004);
    skin = mix(skin, skin * 0.8, soft(nose_side, 0.012) * 0.55);
    for (var s = -1.0; s <= 1.0; s = s + 2.0) {
        let nos = sd_ellipse(face - vec2f(s * 0.022, 0.118), vec2f(0.012, 0.007));
        skin = mix(skin, skin * 0.55, cover(nos) * 0.8);
    }
    let tip = length(face - vec2f(-0.01, 0.095));
    skin = skin + vec3f(0.05) * exp(-tip * tip / 0.0006);
    let chin = length(face - vec2f(0.0, 0.29));
    skin = skin * (1.0 - 0.07 * exp(-chin * chin / 0.002));
    c = over(c, skin, inside);

    // Hair in front: a cap over the forehead, shaped per style.
    var cap = sd_ellipse(head_p - vec2f(0.0, -0.17), vec2f(0.345, 0.27));
    let hairline = head_p.y + 0.13 - 0.05 * (head_p.x * head_p.x) / 0.09;
    cap = max(cap, hairline);
    if (hair_style == 3u) {
        cap = max(sd_ellipse(head_p - vec2f(0.02, -0.2), vec2f(0.35, 0.25)), head_p.y + 0.16 + 0.12 * head_p.x);
    }
    if (hair_style == 0u || hair_style == 2u) {
        for (var s = -1.0; s <= 1.0; s = s + 2.0) {
            let lock = sd_capsule(head_p, vec2f(s * 0.29, -0.12), vec2f(s * 0.30, select(0.08, 0.2, hair_style == 2u)), 0.04);
            cap = min(cap, lock);
            if (hair_style == 2u) {
                // A fall of hair over each shoulder, in front of the clothes, narrowing to
                // its tips.
                let fall = sd_taper(head_p, vec2f(s * 0.31, 0.08), vec2f(s * 0.40, 0.7), 0.07, 0.045);
                cap = smin(cap, fall, 0.05);
            }
        }
    }
    let hair_shade = u.hair.rgb * strands * (0.85 + 0.3 * max(-head_p.y - 0.3, 0.0) + 0.15 * (1.0 - smoothstep(-0.3, 0.1, head_p.x)));
    c = over(c, hair_shade, cover(cap));

    layer[gid.y * u.boxsz.x + gid.x] = pack4x8unorm(clamp(c, vec4f(0.0), vec4f(1.0)));
}

// The head layer moved by the pose (bilinear, by the sampler on `layer_tex`, the layer's
// pixels) over `base` at head-box pixel `g`, into `head`. The layer's edges are transparent,
// so clamping to them is the same as sampling outside.
fn composite_at(g: vec2u) {
    let xy = vec2u(u32(u.center.z) + g.x, u32(u.center.w) + g.y);
    let idx = xy.y * u32(u.size.x) + xy.x;
    let px = vec2f(xy) + vec2f(0.5);
    // Where this pixel's centre lies in the neutral-pose layer, in texture coordinates.
    let lp = posed(px) * u.size.z + u.center.xy - u.center.zw;
    let l = textureSampleLevel(layer_tex, layer_smp, lp / vec2f(u.boxsz.xy), 0.0);
    head[g.y * u.boxsz.x + g.x] = pack(l.rgb + unpack(base[idx]) * (1.0 - l.a));
}

// A job's first frame, over the whole head box: the composite on the columns of each row
// the head can ever reach (spans follow the layer's pixels in `layer`), the static frame
// elsewhere — which later composites never touch again.
@compute @workgroup_size(8, 8, 1)
fn composite_head(@builtin(global_invocation_id) gid: vec3u) {
    if (gid.x >= u.boxsz.x || gid.y >= u.boxsz.y) { return; }
    let span_at = u.boxsz.x * u.boxsz.y + 2u * gid.y;
    if (gid.x < layer[span_at] || gid.x >= layer[span_at + 1u]) {
        let xy = vec2u(u32(u.center.z) + gid.x, u32(u.center.w) + gid.y);
        head[gid.y * u.boxsz.x + gid.x] = base[xy.y * u32(u.size.x) + xy.x];
        return;
    }
    composite_at(gid.xy);
}

// The 8×8 tiles of the head box the pose has moved by their step since they were last
// composited, one workgroup each: the frame's list of them starts at `tiles[u.boxsz.z]`.
@compute @workgroup_size(8, 8, 1)
fn composite_tiles(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let t = tiles[u.boxsz.z + wg.x];
    let g = vec2u((t & 0xffffu) * 8u + lid.x, (t >> 16u) * 8u + lid.y);
    if (g.x >= u.boxsz.x || g.y >= u.boxsz.y) { return; }
    composite_at(g);
}

// Frame pixel `xy` (inside the head box) → its index in `head` and in the patch.
fn head_index(xy: vec2u) -> u32 {
    return (xy.y - u32(u.center.w)) * u.boxsz.x + (xy.x - u32(u.center.z));
}

// Face-local coordinates of a pixel centre under the pose, and whether it is on the face.
fn face_at(px: vec2f) -> vec3f {
    let head_p = posed(px);
    let face = head_p - vec2f(u.fc.x * 0.1, u.fc.y * 0.12);
    return vec3f(face, cover(sd_head(head_p) + 0.01));
}

// Eyes (white, iris, pupil, highlight, lids, lashes, crease) and brows over `skin`.
fn eyes(skin: vec3f, px: vec2f) -> vec3f {
    var c = skin;
    let blink = u.fb.y;
    let gaze = u.fb.zw;
    let smile = u.fd.x;
    let brow = u.fd.y;
    let fi = face_at(px);
    let face = fi.xy;
    let inside = fi.z;

    // Only the eye on this pixel's side: every shape of the other lies more than 0.04 units
    // (well over a pixel) away, so its coverage here is exactly zero and skipping it changes
    // nothing.
    let s = select(-1.0, 1.0, face.x >= 0.0);
    {
        let e = face - vec2f(s * 0.115, -0.03);
        let joy = max(smile, 0.0);
        let stern = max(-brow, 0.0);
        let eye = sd_ellipse(e, vec2f(0.062, 0.034 - 0.004 * smile));
        let open = 1.0 - blink;
        // A stern look lowers the upper lids; a smile pushes the lower lids up ("smiling
        // eyes"), both narrowing the eye.
        let lid_y = mix(-0.036 + 0.02 * stern, 0.006, blink);
        let lid_cut = lid_y - e.y;
        let lower_y = 0.034 - 0.018 * joy;
        let lower_cut = e.y - lower_y - 0.004 * (e.x * e.x) / 0.0036;
        let visible = max(max(eye, lid_cut), lower_cut);
        c = blend(c, vec3f(0.96, 0.95, 0.93), cover(visible) * inside);
        let ic = vec2f(gaze.x * 0.022, gaze.y * 0.012 + 0.002);
        let iris = sd_circle(e - ic, 0.026);
        c = blend(c, u.iris.rgb * (0.7 + 0.6 * smoothstep(0.0, 0.026, length(e - ic - vec2f(0.0, 0.01)))), cover(max(iris, visible)) * inside);
        let pupil = sd_circle(e - ic, 0.011);
        c = blend(c, vec3f(0.04), cover(max(pupil, visible)) * inside);
        let hl = sd_circle(e - ic - vec2f(-0.008, -0.009), 0.005);
        c = blend(c, vec3f(1.0), cover(max(hl, visible)) * inside * open);
        let lid = max(eye - 0.004, -lid_cut);
        c = blend(c, skin * 0.93, cover(lid) * inside);
        let lash = max(abs(lid_cut) - 0.0045 - 0.002 * (1.0 - abs(e.x) / 0.07), eye - 0.006);
        c = blend(c, vec3f(0.08, 0.06, 0.06), cover(lash) * inside);
        let crease = max(abs(sd_ellipse(e - vec2f(0.0, -0.006), vec2f(0.066, 0.046))) - 0.002, e.y + 0.01);
        c = blend(c, skin * 0.82, cover(crease) * 0.5 * inside);
        // The raised lower lid: skin over the eye below its line, with a soft lid edge.
        let lower_lid = max(eye - 0.004, -lower_cut);
        c = blend(c, skin * 0.95, cover(lower_lid) * inside * step(0.01, joy));
        let lower_line = max(abs(lower_cut) - 0.002, eye - 0.004);
        c = blend(c, skin * 0.7, cover(lower_line) * inside * smoothstep(0.05, 0.3, joy));
    }

    // Brows: thick capsules, raised by `brow`, angled by expression (this side's only).
    // Raised (friendly): higher, arched, the inner ends lifted. Lowered (serious): the inner
    // ends pulled down and together, with a crease between them.
    {
        let up = max(brow, 0.0);
        let down = max(-brow, 0.0);
        let by = -0.105 - 0.03 * brow;
        let a = vec2f(s * (0.065 - 0.01 * down), by - 0.01 * up + 0.024 * down);
        let b = vec2f(s * 0.165, by - 0.008 - 0.012 * up + 0.004 * down);
        let mid = (a + b) * 0.5 - vec2f(0.0, 0.008 * up);
        let br = min(sd_capsule(face, a, mid, 0.013), sd_capsule(face, mid, b, 0.012));
        c = blend(c, u.hair.rgb * 0.9, cover(br) * inside);
        let glabella = sd_capsule(face, vec2f(s * 0.022, -0.085), vec2f(s * 0.028, -0.05), 0.0025);
        c = blend(c, skin * 0.78, cover(glabella) * inside * smoothstep(0.15, 0.45, down));
    }

    return c;
}

// The mouth over `skin`: width from spread/rounding, opening from the jaw, corners
// following the smile; lips, the dark opening, upper teeth, tongue, the closed-lip line.
fn mouth(skin: vec3f, px: vec2f) -> vec3f {
    var c = skin;
    let mouth_open = u.fa.x;
    let mouth_wide = u.fa.y;
    let mouth_round = u.fa.z;
    let teeth = u.fa.w;
    let tongue = u.fb.x;
    let smile = u.fd.x;
    let fi = face_at(px);
    let face = fi.xy;
    let inside = fi.z;

    // A smile widens the mouth and lifts its corners; a stern mouth is narrower, its
    // corners turned down and its lips pressed thinner.
    let joy = max(smile, 0.0);
    let stern = max(-smile, 0.0);
    let mw = 0.085 * (1.0 + 0.28 * mouth_wide - 0.3 * mouth_round) * (1.0 + 0.14 * joy - 0.08 * stern);
    let mh = 0.004 + 0.07 * mouth_open;
    let mc = vec2f(0.0, 0.205 + 0.02 * mouth_open);
    var m = face - mc;
    m.y = m.y + smile * 0.05 * (m.x * m.x) / (mw * mw) - smile * 0.008;
    let inner = sd_ellipse(m, vec2f(mw, mh));
    let lips = sd_ellipse(m - vec2f(0.0, 0.002), vec2f(mw + 0.012, mh + 0.016 - 0.007 * stern + 0.004 * mouth_round));
    c = blend(c, u.lip.rgb * (0.85 + 0.2 * smoothstep(-0.02, 0.02, m.y)), cover(lips) * inside);
    let open_a = cover(inner) * inside * smoothstep(0.004, 0.012, mh);
    c = blend(c, vec3f(0.22, 0.05, 0.07), open_a);
    let upper_teeth = max(inner, m.y + mh - 0.022 * teeth - 0.001);
    c = blend(c, vec3f(0.95, 0.93, 0.88), cover(upper_teeth) * open_a * min(teeth * 1.5, 1.0));
    let tg = sd_ellipse(m - vec2f(0.0, mh * 0.75), vec2f(mw * 0.6, mh * 0.45 + 0.006));
    c = blend(c, vec3f(0.78, 0.36, 0.38), cover(max(tg, inner)) * open_a * (0.4 + 0.6 * tongue));
    let line = abs(m.y) - 0.0022;
    c = blend(c, u.lip.rgb * 0.55, cover(max(line, abs(m.x) - mw)) * inside * (1.0 - open_a));

    return c;
}

// Every frame, over the eyes box: eyes and brows on the composited head, into the patch.
@compute @workgroup_size(8, 8, 1)
fn render_eyes(@builtin(global_invocation_id) gid: vec3u) {
    if (gid.x >= u.ebox.z || gid.y >= u.ebox.w) { return; }
    let xy = vec2u(u.ebox.x + gid.x, u.ebox.y + gid.y);
    if (xy.x >= u32(u.size.x) || xy.y >= u32(u.size.y)) { return; }
    let i = head_index(xy);
    out[i] = pack(eyes(unpack(head[i]), vec2f(xy) + vec2f(0.5)));
}

// Every frame, over the mouth box: the mouth on the composited head, into the patch.
@compute @workgroup_size(8, 8, 1)
fn render_mouth(@builtin(global_invocation_id) gid: vec3u) {
    if (gid.x >= u.mbox.z || gid.y >= u.mbox.w) { return; }
    let xy = vec2u(u.mbox.x + gid.x, u.mbox.y + gid.y);
    if (xy.x >= u32(u.size.x) || xy.y >= u32(u.size.y)) { return; }
    let i = head_index(xy);
    out[i] = pack(mouth(unpack(head[i]), vec2f(xy) + vec2f(0.5)));
}

@compute @workgroup_size(8, 8, 1)
fn render_captions(@builtin(global_invocation_id) gid: vec3u) {
    if (gid.x >= u.cbox.z || gid.y >= u.cbox.w) { return; }
    let w = u32(u.size.x);
    let xy = vec2u(u.cbox.x + gid.x, u.cbox.y + gid.y);
    if (xy.x >= w || xy.y >= u32(u.size.y)) { return; }
    // Pixels of the head box were composited this frame (head part of the patch); elsewhere
    // start from the static layer, so last frame's caption never lingers.
    let hx = u32(u.center.z);
    let hy = u32(u.center.w);
    let in_head = xy.x >= hx && xy.x < hx + u.boxsz.x && xy.y >= hy && xy.y < hy + u.boxsz.y;
    var c = unpack(base[xy.y * w + xy.x]);
    if (in_head) { c = unpack(out[(xy.y - hy) * u.boxsz.x + (xy.x - hx)]); }
    if (u.cword.x > 0.5) {
        let size = vec2f(f32(u.cbox.z), f32(u.cbox.w));
        let local = vec2f(f32(gid.x) + 0.5, f32(gid.y) + 0.5);
        let panel = sd_box(local - size * 0.5, size * 0.5 - vec2f(1.0), size.y * 0.3);
        c = mix(c, vec3f(0.04, 0.06, 0.11), 0.62 * clamp(0.5 - panel, 0.0, 1.0));
        let wpr = (u.cbox.z + 3u) / 4u;
        let word = caps[gid.y * wpr + gid.x / 4u];
        let cov = f32((word >> ((gid.x % 4u) * 8u)) & 255u) / 255.0;
        let lit = local.x >= u.cword.y && local.x < u.cword.z;
        let col = select(vec3f(0.96, 0.96, 0.96), vec3f(1.0, 0.82, 0.2), lit);
        c = mix(c, col, cov);
    }
    out[u.boxsz.x * u.boxsz.y + gid.y * u.cbox.z + gid.x] = pack(c);
}
