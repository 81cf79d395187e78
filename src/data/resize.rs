//! How an image is resized when it is loaded (and, for image folders, stored in the cache).

use image::imageops::FilterType;

/// The size rule applied to every image at load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resize {
    /// Keep the image's own size.
    Keep,
    /// `s × s`, the aspect ratio not kept (`--image-size`).
    Square(usize),
    /// Shrink so that the shorter side is `s`, keeping the aspect ratio (the longer side is
    /// rounded to the nearest pixel); an image whose shorter side is at most `s` is kept as it
    /// is, since enlarging adds no information and the crop resamples anyway.
    ShorterSide(usize),
}

impl Resize {
    /// The `(height, width)` an `h × w` image becomes.
    pub fn target(self, h: usize, w: usize) -> (usize, usize) {
        match self {
            Resize::Keep => (h, w),
            Resize::Square(s) => (s, s),
            Resize::ShorterSide(s) if h.min(w) <= s => (h, w),
            Resize::ShorterSide(s) => {
                let long =
                    |l: usize| ((l as f64 * s as f64 / h.min(w) as f64).round() as usize).max(1);
                if h <= w {
                    (s, long(w))
                } else {
                    (long(h), s)
                }
            }
        }
    }

    /// Resizes `pixels` (`[h, w, 3]`) by this rule with the triangle (bilinear, antialiased
    /// when shrinking) filter: `(height, width, pixels)`.
    pub fn apply(self, pixels: Vec<u8>, h: usize, w: usize) -> (usize, usize, Vec<u8>) {
        let (th, tw) = self.target(h, w);
        if (th, tw) == (h, w) {
            return (h, w, pixels);
        }
        let img = image::RgbImage::from_raw(w as u32, h as u32, pixels)
            .expect("Resize::apply: buffer length is h*w*3 by construction");
        let out = image::imageops::resize(&img, tw as u32, th as u32, FilterType::Triangle);
        (th, tw, out.into_raw())
    }

    /// A short stable text for cache keys and messages: `keep`, `square64`, `short110`.
    pub fn tag(self) -> String {
        match self {
            Resize::Keep => "keep".into(),
            Resize::Square(s) => format!("square{s}"),
            Resize::ShorterSide(s) => format!("short{s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorter_side_shrinks_only_and_keeps_the_aspect_ratio() {
        let r = Resize::ShorterSide(110);
        assert_eq!(r.target(1200, 1600), (110, 147));
        assert_eq!(r.target(1600, 200), (880, 110));
        assert_eq!(r.target(32, 32), (32, 32), "small images are not enlarged");
        assert_eq!(r.target(110, 500), (110, 500));
        assert_eq!(Resize::Square(7).target(3, 9), (7, 7));
        assert_eq!(Resize::Keep.target(3, 9), (3, 9));
    }

    #[test]
    fn apply_resizes_to_the_target() {
        let (h, w, px) = Resize::ShorterSide(2).apply(vec![50; 4 * 6 * 3], 4, 6);
        assert_eq!((h, w, px.len()), (2, 3, 18));
        assert!(px.iter().all(|&p| p == 50));
        let same = Resize::ShorterSide(8).apply(vec![1; 12], 2, 2);
        assert_eq!(same, (2, 2, vec![1; 12]));
    }
}
