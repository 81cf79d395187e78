//! A built-in captioned image set that needs no download, for CLIP: one shape of a colour, a
//! size and a place on a dark background, with a caption made by a small grammar —
//! "a small red circle on the left", "there is a big blue square at the top", "in the middle, a
//! large yellow cross". The colour word always comes just before the shape word.
//!
//! Some colour–shape combinations are **held out** of the training split ([`HELD_OUT`]: each
//! shape once, each colour at least once): training captions never say "red circle", though
//! they say "red" and "circle" often. The test split has every combination, in class folders
//! `<colour>_<shape>` with captions, so `selfsup eval --zero-shot` can ask whether the model
//! composes words it never saw together. `selfsup make-data captioned-shapes` writes the set.

use super::synthetic::{paint, Look, Pattern};
use crate::rng::Rng;
use rayon::prelude::*;

/// Colour words and their RGB.
pub const COLOURS: [(&str, [f32; 3]); 4] = [
    ("red", [0.9, 0.12, 0.1]),
    ("green", [0.15, 0.78, 0.2]),
    ("blue", [0.2, 0.35, 0.95]),
    ("yellow", [0.95, 0.88, 0.15]),
];

/// Shape words and their class in [`super::synthetic`] (disk, ring, square, triangle, cross).
pub const SHAPES: [(&str, u32); 5] = [
    ("circle", 0),
    ("ring", 1),
    ("square", 2),
    ("triangle", 3),
    ("cross", 4),
];

/// The (colour, shape) pairs no training caption names.
pub const HELD_OUT: [(&str, &str); 5] = [
    ("red", "circle"),
    ("green", "ring"),
    ("blue", "square"),
    ("yellow", "triangle"),
    ("red", "cross"),
];

/// A place: its words and where the centre may be (u range, v range) in [0, 1].
struct Place {
    words: &'static str,
    u: (f32, f32),
    v: (f32, f32),
}

const PLACES: [Place; 5] = [
    Place {
        words: "on the left",
        u: (0.22, 0.3),
        v: (0.35, 0.65),
    },
    Place {
        words: "on the right",
        u: (0.7, 0.78),
        v: (0.35, 0.65),
    },
    Place {
        words: "at the top",
        u: (0.35, 0.65),
        v: (0.22, 0.3),
    },
    Place {
        words: "at the bottom",
        u: (0.35, 0.65),
        v: (0.7, 0.78),
    },
    Place {
        words: "in the middle",
        u: (0.45, 0.55),
        v: (0.45, 0.55),
    },
];

/// Size words (two of each) and the radius range.
const SIZES: [([&str; 2], (f32, f32)); 2] = [
    (["small", "little"], (0.12, 0.16)),
    (["large", "big"], (0.2, 0.24)),
];

/// One captioned image.
pub struct Captioned {
    /// [size, size, 3] u8.
    pub pixels: Vec<u8>,
    pub caption: String,
    /// `<colour>_<shape>`.
    pub class: String,
}

/// The class folder name of a colour and shape.
pub fn class_name(colour: &str, shape: &str) -> String {
    format!("{colour}_{shape}")
}

/// Whether training leaves the pair out.
pub fn held_out(colour: usize, shape: usize) -> bool {
    HELD_OUT.contains(&(COLOURS[colour].0, SHAPES[shape].0))
}

/// Every class, colour-major.
pub fn all_classes() -> Vec<String> {
    COLOURS
        .iter()
        .flat_map(|(c, _)| SHAPES.iter().map(move |(s, _)| class_name(c, s)))
        .collect()
}

/// Draws an image of the pair `class` (colour, shape), or (None) of a random pair that is not
/// held out.
fn draw(size: usize, class: Option<(usize, usize)>, rng: &mut Rng) -> Captioned {
    let (colour, shape) = match class {
        Some(pair) => pair,
        None => loop {
            let (c, s) = (rng.below(COLOURS.len()), rng.below(SHAPES.len()));
            if !held_out(c, s) {
                break (c, s);
            }
        },
    };
    let (size_words, radius) = SIZES[rng.below(SIZES.len())];
    let Place {
        words: place,
        u: us,
        v: vs,
    } = &PLACES[rng.below(PLACES.len())];
    let mut pattern = Pattern::new(SHAPES[shape].1, rng);
    pattern.radius = rng.range(radius.0, radius.1);
    pattern.centre = (rng.range(us.0, us.1), rng.range(vs.0, vs.1));
    let jitter = |v: f32, rng: &mut Rng| (v + rng.range(-0.06, 0.06)).clamp(0.0, 1.0);
    let fg = COLOURS[colour].1.map(|v| jitter(v, rng));
    let grey = rng.range(0.02, 0.3);
    let bg = [grey, grey, grey].map(|v| jitter(v, rng) * 0.9);
    let look = Look::with_colours(bg, fg, rng);
    let pixels = paint(&pattern, &look, size, rng);
    let (c, s) = (COLOURS[colour].0, SHAPES[shape].0);
    let size_word = size_words[rng.below(2)];
    let caption = match rng.below(4) {
        0 => format!("a {size_word} {c} {s} {place}"),
        1 => format!("there is a {size_word} {c} {s} {place}"),
        2 => format!("{place}, a {size_word} {c} {s}"),
        _ => format!("a {c} {s}, {size_word}, {place}"),
    };
    Captioned {
        pixels,
        caption,
        class: class_name(c, s),
    }
}

/// `n` images of a split, deterministic in `seed`. Training images are of random pairs, the
/// held-out ones left out; test images go through every pair in turn (image i of pair
/// i mod 20, colour-major), so that each class has its share.
pub fn generate(n: usize, size: usize, training: bool, seed: u64) -> Vec<Captioned> {
    let stream = if training { 0 } else { 1 };
    let pairs = COLOURS.len() * SHAPES.len();
    (0..n)
        .into_par_iter()
        .map(|i| {
            let class = (!training).then(|| ((i % pairs) / SHAPES.len(), i % SHAPES.len()));
            draw(
                size,
                class,
                &mut Rng::for_sample(seed, stream, i as u64, 11),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_never_names_a_held_out_pair_and_the_test_split_has_them() {
        let train = generate(400, 16, true, 0);
        for (c, s) in HELD_OUT {
            let pair = format!("{c} {s}");
            assert!(train.iter().all(|x| !x.caption.contains(&pair)), "{pair}");
            assert!(
                train.iter().any(|x| x.caption.contains(c))
                    && train.iter().any(|x| x.caption.contains(s))
            );
        }
        let test = generate(40, 16, false, 0);
        for class in all_classes() {
            assert_eq!(
                test.iter().filter(|x| x.class == class).count(),
                2,
                "{class}"
            );
        }
        // the caption says the class: colour word just before the shape word
        for x in &test {
            assert!(
                x.caption.contains(&x.class.replace('_', " ")),
                "{} / {}",
                x.caption,
                x.class
            );
            assert_eq!(x.pixels.len(), 16 * 16 * 3);
        }
        assert_eq!(all_classes().len(), 20);
        // reproducible
        assert_eq!(
            generate(3, 16, true, 5)[2].caption,
            generate(3, 16, true, 5)[2].caption
        );
        assert_eq!(
            generate(3, 16, true, 5)[2].pixels,
            generate(3, 16, true, 5)[2].pixels
        );
    }

    #[test]
    fn the_colour_word_is_the_colour_painted() {
        // mean of the brightest-saturated pixels lies nearest the named colour
        for x in generate(60, 32, false, 1) {
            let colour = x.class.split('_').next().unwrap();
            let px: Vec<[f32; 3]> = x
                .pixels
                .chunks(3)
                .map(|p| {
                    [
                        p[0] as f32 / 255.0,
                        p[1] as f32 / 255.0,
                        p[2] as f32 / 255.0,
                    ]
                })
                .filter(|p| {
                    p.iter().fold(0f32, |a, &b| a.max(b)) - p.iter().fold(1f32, |a, &b| a.min(b))
                        > 0.4
                })
                .collect();
            assert!(!px.is_empty(), "{}", x.caption);
            let mean: Vec<f32> = (0..3)
                .map(|k| px.iter().map(|p| p[k]).sum::<f32>() / px.len() as f32)
                .collect();
            let nearest = COLOURS
                .iter()
                .min_by(|a, b| {
                    let d = |c: &[f32; 3]| (0..3).map(|k| (c[k] - mean[k]).powi(2)).sum::<f32>();
                    d(&a.1).total_cmp(&d(&b.1))
                })
                .unwrap()
                .0;
            assert_eq!(nearest, colour, "{} {mean:?}", x.caption);
        }
    }
}
