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
use crate::error::SettingError;
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
pub fn check_templates(templates: &[String]) -> Result<(), SettingError> {
    match templates.iter().find(|t| t.matches(SLOT).count() != 1) {
        Some(t) => Err(format!(
            "--templates: {t:?} must hold {SLOT} once, where the class name goes (e.g. \"a photo of a {SLOT}.\")"
        ).into()),
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

/// One class's zero-shot score.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ClassScore {
    pub name: String,
    /// Top-1 over its test images, in [0, 1].
    pub top1: f64,
    pub images: usize,
    /// No training caption names it (None: the training split has no captions).
    pub unseen: Option<bool>,
}

/// Image↔text retrieval on a captioned test split (recall in [0, 1]).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Retrieval {
    pub images: usize,
    pub captions: usize,
    /// (R@1, R@5) image→text.
    pub image_to_text: (f64, f64),
    /// (R@1, R@5) text→image.
    pub text_to_image: (f64, f64),
}

/// What [`evaluate`] measured.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ZeroShotReport {
    /// Top-1 over every test image of the chosen classes, in [0, 1].
    pub top1: f64,
    pub images: usize,
    /// 1 / the number of classes.
    pub chance: f64,
    pub templates: usize,
    /// In the order of the classes asked for.
    pub classes: Vec<ClassScore>,
    pub retrieval: Option<Retrieval>,
}

impl ZeroShotReport {
    /// Top-1 and images over the classes whose `unseen` is `want`; None when there are none.
    pub fn group(&self, want: bool) -> Option<(usize, f64, usize)> {
        let members: Vec<&ClassScore> = self
            .classes
            .iter()
            .filter(|c| c.unseen == Some(want))
            .collect();
        let n: usize = members.iter().map(|c| c.images).sum();
        let hits: f64 = members.iter().map(|c| c.top1 * c.images as f64).sum();
        (!members.is_empty()).then(|| (members.len(), hits / n.max(1) as f64, n))
    }
}

/// Zero-shot top-1 of `model` on the labeled `test` split over `classes` (names of its class
/// folders; all of them when empty; a name given twice counts once), with `templates` (CLIP's
/// default when empty); which classes no `train_captions` names; and, when the test split has
/// captions, retrieval recall@1/5 both ways. Errors name a class that is no test folder, fewer
/// than 2 classes, a template without `{}`.
pub fn evaluate(
    model: &dyn TextImage,
    test: &crate::data::Dataset,
    train_captions: Option<&[String]>,
    classes: &[String],
    templates: &[String],
    input: ImageInput,
) -> anyhow::Result<ZeroShotReport> {
    let Some(labels) = &test.labels else {
        anyhow::bail!("zero-shot needs a test split of class folders (test/<class>/…): their names are the classes");
    };
    let mut chosen: Vec<String> = Vec::new();
    for c in classes.iter().map(|c| c.trim().to_string()) {
        if !chosen.contains(&c) {
            chosen.push(c);
        }
    }
    if chosen.is_empty() {
        chosen = test.class_names.clone();
    }
    let mut class_index = Vec::with_capacity(chosen.len());
    for c in &chosen {
        let Some(i) = test.class_names.iter().position(|t| t == c) else {
            anyhow::bail!(
                "--classes: {c:?} is not a class folder of the test split (its classes: {})",
                test.class_names.join(", ")
            );
        };
        class_index.push(i as u32);
    }
    anyhow::ensure!(
        chosen.len() >= 2,
        "--classes: give at least 2 classes to choose between"
    );
    let templates = match templates.is_empty() {
        true => vec![DEFAULT_TEMPLATE.to_string()],
        false => templates.to_vec(),
    };
    check_templates(&templates).map_err(anyhow::Error::msg)?;
    // the test images of the chosen classes, labelled by their place in `chosen`
    let keep: Vec<usize> = (0..test.len())
        .filter(|&i| class_index.contains(&labels[i]))
        .collect();
    let truth: Vec<usize> = keep
        .iter()
        .map(|&i| {
            class_index
                .iter()
                .position(|&c| c == labels[i])
                .expect("kept")
        })
        .collect();
    let u = embed_images(model, &test.subset(&keep).images, input); // [N, D]
    let w = class_embeddings(model, &chosen, &templates)?; // [C, D]
    let pred: Vec<i64> = Vec::try_from(&predict(&u, &w))?;
    let unseen = train_captions.map(|c| unseen_in_captions(&chosen, c));
    let scores = chosen
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let idx: Vec<usize> = (0..truth.len()).filter(|&i| truth[i] == c).collect();
            let hits = idx.iter().filter(|&&i| pred[i] == c as i64).count();
            ClassScore {
                name: name.clone(),
                top1: hits as f64 / idx.len().max(1) as f64,
                images: idx.len(),
                unseen: unseen.as_ref().map(|u| u[c]),
            }
        })
        .collect();
    let hits = (0..truth.len())
        .filter(|&i| pred[i] == truth[i] as i64)
        .count();
    let retrieval = match &test.captions {
        None => None,
        Some(captions) => {
            let u_all = embed_images(model, &test.images, input);
            let (distinct, caption_of) = distinct_captions(captions);
            let v = model
                .embed_texts(&distinct)?
                .to_kind(Kind::Float)
                .to_device(tch::Device::Cpu);
            let r = retrieval_recall(&u_all, &v, &caption_of, &[1, 5]);
            Some(Retrieval {
                images: test.len(),
                captions: distinct.len(),
                image_to_text: (r[0].0, r[1].0),
                text_to_image: (r[0].1, r[1].1),
            })
        }
    };
    Ok(ZeroShotReport {
        top1: hits as f64 / truth.len().max(1) as f64,
        images: truth.len(),
        chance: 1.0 / chosen.len() as f64,
        templates: templates.len(),
        classes: scores,
        retrieval,
    })
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
        let e = check_templates(&["a photo.".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("{}"), "{e}");
    }

    /// Embeds an image by its mean colour and a text by the colour words it holds: a model
    /// whose zero-shot answers are known.
    struct Colours;
    impl TextImage for Colours {
        fn embed_images(&self, x: &Tensor) -> Tensor {
            unit(&x.mean_dim([2i64, 3].as_slice(), false, Kind::Float)) // [n, 3]
        }
        fn embed_texts(&self, texts: &[String]) -> anyhow::Result<Tensor> {
            let rows: Vec<f32> = texts
                .iter()
                .flat_map(|t| {
                    ["red", "green", "blue"].map(|c| if t.contains(c) { 1.0 } else { 0.0 })
                })
                .collect();
            Ok(unit(
                &Tensor::from_slice(&rows).view([texts.len() as i64, 3]),
            ))
        }
        fn device(&self) -> tch::Device {
            tch::Device::Cpu
        }
    }

    /// 4 solid images of each of red, green, blue as a labeled test split; `captions` adds
    /// "a red square" etc.
    fn colour_split(captions: bool) -> crate::data::Dataset {
        let mut b = crate::data::StoreBuilder::default();
        let (mut labels, mut caps) = (Vec::new(), Vec::new());
        for (c, name) in ["red", "green", "blue"].iter().enumerate() {
            for _ in 0..4 {
                let mut px = vec![20u8; 8 * 8 * 3];
                px.iter_mut().skip(c).step_by(3).for_each(|v| *v = 250);
                b.push(8, 8, &px);
                labels.push(c as u32);
                caps.push(format!("a {name} square"));
            }
        }
        crate::data::Dataset {
            images: b.finish(),
            labels: Some(labels),
            class_names: vec!["red".into(), "green".into(), "blue".into()],
            names: (0..12).map(|i| format!("test[{i}]")).collect(),
            skipped: Vec::new(),
            captions: captions.then_some(caps),
            left_out: Default::default(),
        }
    }

    const INPUT: ImageInput = ImageInput {
        input_side: 8,
        channels_last: false,
        batch_size: 5,
    };

    #[test]
    fn evaluate_scores_a_model_whose_answers_are_known() {
        let test = colour_split(true);
        let train = vec!["a red thing".to_string(), "a green thing".to_string()];
        let r = evaluate(
            &Colours,
            &test,
            Some(&train),
            &[],
            &["a {} square".into()],
            INPUT,
        )
        .unwrap();
        assert_eq!((r.top1, r.images, r.templates), (1.0, 12, 1));
        assert!((r.chance - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.classes[2].unseen, Some(true)); // "blue" is in no training caption
        assert_eq!(r.group(true), Some((1, 1.0, 4)));
        assert_eq!(r.group(false), Some((2, 1.0, 8)));
        let ret = r.retrieval.unwrap();
        assert_eq!((ret.images, ret.captions), (12, 3));
        assert_eq!(ret.image_to_text, (1.0, 1.0));
        // a class named twice counts once; a subset is scored on its own images
        let two = evaluate(
            &Colours,
            &colour_split(false),
            None,
            &["blue".into(), "red".into(), "blue".into()],
            &[],
            INPUT,
        )
        .unwrap();
        assert_eq!((two.classes.len(), two.images, two.chance), (2, 8, 0.5));
        assert!(two.retrieval.is_none() && two.classes[0].unseen.is_none());
        // a model that mixes two colours up scores them wrong
        let names = ["green", "red", "blue"].map(String::from);
        let mut swapped = colour_split(false);
        swapped.class_names = names.to_vec();
        let r = evaluate(&Colours, &swapped, None, &[], &[], INPUT).unwrap();
        assert!((r.top1 - 4.0 / 12.0).abs() < 1e-12, "{r:?}");
        // bad input
        let e = evaluate(
            &Colours,
            &test,
            None,
            &["purple".into(), "red".into()],
            &[],
            INPUT,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.to_string().contains("\"purple\" is not a class folder"),
            "{e}"
        );
        let e = evaluate(&Colours, &test, None, &["red".into()], &[], INPUT)
            .unwrap_err()
            .to_string();
        assert!(e.to_string().contains("at least 2 classes"), "{e}");
    }
}
