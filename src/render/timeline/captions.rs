//! Burned-in captions: the spoken words grouped into lines, each line rasterised once on the
//! CPU (fontdue, bundled DejaVu Sans Bold, glyphs cached per character) into a coverage
//! bitmap the kernel draws over a translucent panel; the word being spoken is highlighted by
//! its x-range, which changes per frame without re-rasterising anything.

use std::collections::HashMap;

use super::align::WordAt;

const FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans-Bold.ttf");

#[derive(Debug, thiserror::Error)]
#[error("the caption font could not be loaded: {0}")]
pub struct CaptionError(String);

/// One caption line: when it shows, its coverage bitmap, and each word's start and x-range.
#[derive(Debug, Clone)]
pub struct Line {
    pub start_s: f64,
    /// 8-bit coverage, four pixels per `u32`, rows of `words_per_row` u32s.
    pub coverage: Vec<u32>,
    pub words: Vec<(f64, f32, f32)>,
}

#[derive(Debug, Clone)]
pub struct CaptionTrack {
    /// x, y, width, height of the caption box in the frame.
    pub area: [u32; 4],
    pub lines: Vec<Line>,
}

/// What the kernel needs for one frame: the line to show and the highlighted x-range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaptionFrame {
    pub line: usize,
    pub x0: f32,
    pub x1: f32,
}

impl CaptionTrack {
    pub fn words_per_row(&self) -> usize {
        (self.area[2] as usize).div_ceil(4)
    }

    /// The caption at time `t` (seconds): the last line started, and its current word.
    pub fn at(&self, t: f64) -> Option<CaptionFrame> {
        let line = self.lines.iter().rposition(|l| l.start_s <= t)?;
        let l = &self.lines[line];
        let (_, x0, x1) = l
            .words
            .iter()
            .rev()
            .find(|w| w.0 <= t)
            .copied()
            .unwrap_or((0.0, 0.0, 0.0));
        Some(CaptionFrame { line, x0, x1 })
    }

    /// Lines of the words, each at most `max_width` pixels wide at the frame's font size.
    pub fn build(words: &[WordAt], width: u32, height: u32) -> Result<Self, CaptionError> {
        let font = fontdue::Font::from_bytes(FONT, fontdue::FontSettings::default())
            .map_err(|e| CaptionError(e.to_string()))?;
        let size = (height as f32 * 0.05).max(10.0);
        let area_w = ((width as f32 * 0.84) as u32).max(16) & !3;
        let area_h = (size * 1.9) as u32;
        let area = [
            (width - area_w) / 2,
            (height as f32 * 0.96) as u32 - area_h,
            area_w,
            area_h,
        ];
        let max_width = area_w as f32 - size * 1.2;
        let mut glyphs: HashMap<char, (fontdue::Metrics, Vec<u8>)> = HashMap::new();
        let mut glyph = |c: char| {
            glyphs
                .entry(c)
                .or_insert_with(|| font.rasterize(c, size))
                .clone()
        };
        let space = glyph(' ').0.advance_width;

        // Group words into lines by measured width.
        let mut groups: Vec<Vec<&WordAt>> = vec![Vec::new()];
        let mut line_w = 0.0;
        for w in words.iter().filter(|w| !w.text.trim().is_empty()) {
            let ww: f32 = w.text.chars().map(|c| glyph(c).0.advance_width).sum();
            let last = groups.len() - 1;
            if !groups[last].is_empty() && line_w + space + ww > max_width {
                groups.push(Vec::new());
                line_w = 0.0;
            }
            let last = groups.len() - 1;
            line_w += if groups[last].is_empty() {
                ww
            } else {
                space + ww
            };
            groups[last].push(w);
        }

        let wpr = (area_w as usize).div_ceil(4);
        let baseline = area_h as f32 * 0.5 + size * 0.36;
        let mut lines = Vec::new();
        for group in groups.into_iter().filter(|g| !g.is_empty()) {
            let total: f32 = group
                .iter()
                .map(|w| {
                    w.text
                        .chars()
                        .map(|c| glyph(c).0.advance_width)
                        .sum::<f32>()
                })
                .sum::<f32>()
                + space * (group.len() - 1) as f32;
            let mut pen = ((area_w as f32 - total) / 2.0).max(0.0);
            let mut cov = vec![0u8; wpr * 4 * area_h as usize];
            let mut spans = Vec::new();
            for (i, w) in group.iter().enumerate() {
                if i > 0 {
                    pen += space;
                }
                let x0 = pen;
                for c in w.text.chars() {
                    let (m, bitmap) = glyph(c);
                    let gx = (pen + m.xmin as f32).round() as i64;
                    let gy = (baseline - m.height as f32 - m.ymin as f32).round() as i64;
                    for row in 0..m.height {
                        for col in 0..m.width {
                            let (x, y) = (gx + col as i64, gy + row as i64);
                            if x < 0 || y < 0 || x >= area_w as i64 || y >= area_h as i64 {
                                continue;
                            }
                            let dst = &mut cov[y as usize * wpr * 4 + x as usize];
                            *dst = (*dst).max(bitmap[row * m.width + col]);
                        }
                    }
                    pen += m.advance_width;
                }
                spans.push((
                    f64::from(w.start_ms) / 1000.0,
                    x0 - size * 0.12,
                    pen + size * 0.12,
                ));
            }
            lines.push(Line {
                start_s: spans.first().map_or(0.0, |s| s.0),
                coverage: cov
                    .chunks(4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                words: spans,
            });
        }
        Ok(Self { area, lines })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<WordAt> {
        text.split_whitespace()
            .enumerate()
            .map(|(i, w)| WordAt {
                text: w.to_string(),
                start_ms: i as u32 * 300,
                end_ms: i as u32 * 300 + 250,
            })
            .collect()
    }

    #[test]
    fn words_wrap_into_lines_and_the_current_word_is_found() {
        let track = CaptionTrack::build(&words("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"), 640, 360)
            .expect("font loads");
        assert!(track.lines.len() >= 2, "{} lines", track.lines.len());
        assert!(
            track
                .lines
                .iter()
                .all(|l| l.coverage.iter().any(|c| *c != 0)),
            "every line has ink"
        );
        let f = track.at(0.35).expect("caption");
        assert_eq!(f.line, 0);
        assert!(f.x1 > f.x0 && f.x0 > 0.0);
        let later = track.at(4.0).expect("caption");
        assert!(later.line >= 1);
        assert!(track.at(-1.0).is_none());
    }
}
