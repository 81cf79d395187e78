//! Zero-shot classification and image–text retrieval with a model that embeds both (CLIP,
//! [`TextImage`]).
//!
//! - **Zero-shot** (CLIP §3.1.4): class c's prompts `template.replace("{}", name_c)` are
//!   embedded, averaged over the templates and normalised: `w_c` [C, D]. Image i takes
//!   `argmax_c u_i · w_c`. No labeled training image is used; the classes need only names.
//! - **Retrieval** on a captioned split: recall@k image→text (the image's caption among the k
//!   captions nearest it) and text→image (one of the k images nearest a caption has it).
//!   Captions equal in text are one caption (generated sets repeat them): the gallery is the
//!   distinct captions.

use crate::augment::{map_eval_batches, ViewRecipe};
use crate::data::ImageStore;
use crate::method::TextImage;
use tch::{Kind, Tensor};

/// The prompt CLIP's paper starts from when no templates are given.
pub const DEFAULT_TEMPLATE: &str = "a photo of a {}.";

/// Where a template takes the class name.
pub const SLOT: &str = "{}";

/// How the images are shown to the image tower: the eval transform at `input_side`.
#[derive(Clone, Copy, Debug)]
pub struct ImageInput {
    pub input_side: usize,
    pub channels_last: bool,
    pub batch_size: usize,
}

/// [N, D] unit image embeddings of every image of `images`.
pub fn embed_images(model: &dyn TextImage, images: &ImageStore, input: ImageInput) -> Tensor {
    let recipe = ViewRecipe::eval(input.input_side);
    let parts = map_eval_batches(
        images,
        &recipe,
        input.batch_size,
        input.channels_last,
        false,
        |x| {
            model
                .embed_images(&crate::device::to_device(x, model.device()))
                .to_kind(Kind::Float)
                .to_device(tch::Device::Cpu)
        },
    );
    Tensor::cat(&parts, 0)
}

/// A class name as text: `_` reads as a space (`red_circle` → `red circle`).
pub fn spoken(class: &str) -> String {
    class.replace('_', " ")
}

/// Checks templates: each holds [`SLOT`] once.
pub fn check_templates(templates: &[String]) -> Result<(), String> {
    match templates.iter().find(|t| t.matches(SLOT).count() != 1) {
        Some(t) => Err(format!(
            "--templates: {t:?} must hold {SLOT} once, where the class name goes (e.g. \"a photo of a {SLOT}.\")"
        )),
        None => Ok(()),
    }
}

/// `w` [C, D]: each class's prompt embeddings averaged over the templates, normalised.
pub fn class_embeddings(
    model: &dyn TextImage,
    classes: &[String],
    templates: &[String],
) -> anyhow::Result<Tensor> {
    let mut rows = Vec::with_capacity(classes.len());
    for c in classes {
        let prompts: Vec<String> = templates
            .iter()
            .map(|t| t.replace(SLOT, &spoken(c)))
            .collect();
        let e = model
            .embed_texts(&prompts)?
            .to_kind(Kind::Float)
            .to_device(tch::Device::Cpu); // [T, D]
        rows.push(e.mean_dim([0i64].as_slice(), false, Kind::Float)); // [D]
    }
    Ok(unit(&Tensor::stack(&rows, 0)))
}

/// Rows divided by their L2 norms.
fn unit(x: &Tensor) -> Tensor {
    x / x
        .norm_scalaropt_dim(2, [1i64].as_slice(), true)
        .clamp_min(1e-12)
}

/// `argmax_c u_i · w_c`: [N, D], [C, D] → [N] int64.
pub fn predict(images: &Tensor, classes: &Tensor) -> Tensor {
    images.matmul(&classes.tr()).argmax(1, false)
}

/// Whether `phrase` occurs in `text` as whole words (lower-cased).
fn has_phrase(text: &str, phrase: &str) -> bool {
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let (t, p) = (words(text), words(phrase));
    !p.is_empty() && t.windows(p.len()).any(|w| w == p.as_slice())
}

/// For each class: whether no training caption holds its name as whole words (`red circle`):
/// such a class was never named in training, and classifying it is zero-shot in the strict
/// sense (attribute combinations held out of the built-in captioned shapes).
pub fn unseen_in_captions(classes: &[String], train_captions: &[String]) -> Vec<bool> {
    classes
        .iter()
        .map(|c| {
            let name = spoken(c);
            !train_captions.iter().any(|t| has_phrase(t, &name))
        })
        .collect()
}

/// Recall@k both ways on a captioned split: image embeddings `u` [N, D] with their captions,
/// caption embeddings `v` [U, D] of the distinct captions, `caption_of[i]` the row of v that is
/// image i's caption. Returns (image→text, text→image) for each k of `ks`.
pub fn retrieval_recall(u: &Tensor, v: &Tensor, caption_of: &[i64], ks: &[i64]) -> Vec<(f64, f64)> {
    let n = u.size()[0];
    let sim = u.matmul(&v.tr()); // [N, U]
    let truth = Tensor::from_slice(caption_of); // [N]
    let u_count = v.size()[0];
    ks.iter()
        .map(|&k| {
            // image → text: its caption among the k nearest captions
            let kt = k.min(u_count);
            let (_, top) = sim.topk(kt, 1, true, true); // [N, k]
            let i2t = top
                .eq_tensor(&truth.unsqueeze(1))
                .any_dim(1, false)
                .to_kind(Kind::Float)
                .mean(Kind::Float)
                .double_value(&[]);
            // text → image: one of the k nearest images has the caption
            let ki = k.min(n);
            let (_, top) = sim.tr().topk(ki, 1, true, true); // [U, k]
            let captions_of_top = truth.index_select(0, &top.view(-1)).view([u_count, ki]);
            let t2i = captions_of_top
                .eq_tensor(&Tensor::arange(u_count, (Kind::Int64, tch::Device::Cpu)).unsqueeze(1))
                .any_dim(1, false)
                .to_kind(Kind::Float)
                .mean(Kind::Float)
                .double_value(&[]);
            (i2t, t2i)
        })
        .collect()
}

/// The distinct captions (sorted) and, per image, the index of its caption among them.
pub fn distinct_captions(captions: &[String]) -> (Vec<String>, Vec<i64>) {
    let mut distinct: Vec<String> = captions.to_vec();
    distinct.sort();
    distinct.dedup();
    let index: Vec<i64> = captions
        .iter()
        .map(|c| distinct.binary_search(c).expect("listed") as i64)
        .collect();
    (distinct, index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: &[[f32; 2]]) -> Tensor {
        let flat: Vec<f32> = v.iter().flatten().copied().collect();
        unit(&Tensor::from_slice(&flat).view([v.len() as i64, 2]))
    }

    #[test]
    fn nearest_class_wins() {
        let classes = rows(&[[1.0, 0.0], [0.0, 1.0]]);
        let images = rows(&[[0.9, 0.1], [0.2, 0.8], [-1.0, 0.1]]);
        let p: Vec<i64> = Vec::try_from(&predict(&images, &classes)).unwrap();
        assert_eq!(p, [0, 1, 1]);
    }

    #[test]
    fn recall_counts_hits_in_the_top_k_both_ways() {
        // three captions on the axes' directions; image 2's embedding is nearest caption 0
        let v = rows(&[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]);
        let u = rows(&[[1.0, 0.1], [0.1, 1.0], [1.0, -0.2]]);
        let r = retrieval_recall(&u, &v, &[0, 1, 2], &[1, 2, 3]);
        // image→text @1: images 0 and 1 right, image 2 wrong
        assert!((r[0].0 - 2.0 / 3.0).abs() < 1e-6, "{r:?}");
        // text→image @1: caption 0 → image 0 (cos 0.995 against image 2's 0.98), caption 1 →
        // image 1, caption 2 = (−1, 0) → image 1 (cos −0.10, image 2's is −0.98): wrong
        assert!((r[0].1 - 2.0 / 3.0).abs() < 1e-6, "{r:?}");
        // @3: every caption is among all three
        assert_eq!(r[2], (1.0, 1.0));
    }

    #[test]
    fn distinct_captions_and_unseen_names() {
        let caps: Vec<String> = ["a red circle", "a blue square", "a red circle"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (d, i) = distinct_captions(&caps);
        assert_eq!(d, ["a blue square", "a red circle"]);
        assert_eq!(i, [1, 0, 1]);
        let classes: Vec<String> = ["red_circle", "red_square", "blue_square", "red"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            unseen_in_captions(&classes, &caps),
            [false, true, false, false]
        );
        // whole words: "red" is not in "bored"
        assert!(!has_phrase("a bored circle", "red"));
        assert!(check_templates(&["a {}.".into()]).is_ok());
        let e = check_templates(&["a photo.".into()]).unwrap_err();
        assert!(e.contains("{}"), "{e}");
    }
}
