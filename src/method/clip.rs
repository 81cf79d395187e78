//! CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
//! Supervision", arXiv:2103.00020): images and their captions embedded into one space. An image
//! tower (any selfsup backbone, then a linear projection) and a text tower (a bag of tokens or a
//! small transformer over a BPE vocabulary learnt from the run's captions, then a linear
//! projection) are trained so that in a batch each image is nearest its own caption: symmetric
//! InfoNCE over the B×B cosine similarities scaled by a learned `exp(t)` (t starts at
//! ln(1/0.07) and is clipped at ln 100, as CLIP and open_clip do).
//!
//! The data are captioned images ([`crate::data::captions`]): the step is given the batch's
//! image indices and looks their captions up, tokenised once at build. The vocabulary is the
//! run's file `tokenizer.json` ([`Method::run_files`]), read back on resume and for
//! `selfsup eval --zero-shot`, which embeds class prompts with the text tower
//! ([`super::TextImage`]).
//!
//! The views keep what captions say: one random resized crop of 90–100 % of the image (CLIP
//! trained on such crops alone), no flip ("on the left" would become false), no colour jitter
//! or grayscale ("red" would).

use super::{
    BuildContext, Method, MethodSection, MethodSpec, StepContext, StepOutput, Targets, TextImage,
};
use super::{MethodPlan, MicroBatch};
use crate::augment::{ViewRecipe, Views};
use crate::backbone::Backbone;
use crate::dist::gather_rows;
use crate::error::SettingError;
use crate::loss::clip::{clamp_log_scale, clip_logits, clip_loss, MAX_LOGIT_SCALE};
use crate::optim::OptimizerName;
use crate::text::{CaptionTokenizer, TextTower, TextTowerKind};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

/// The run file holding the captions' vocabulary.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// `[method.clip]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClipConfig {
    /// `bag` (default: the mean of the token embeddings, then an MLP layer; word order
    /// ignored) or `transformer` (CLIP's kind, for captions whose meaning needs the order). On
    /// the built-in captioned shapes the bag generalised better to held-out pairs and ran 1.4×
    /// faster (the guide, "Beyond one image").
    pub text_tower: TextTowerKind,
    /// Width of the text tower's features. Default 128.
    pub text_width: i64,
    /// Blocks of the transformer text tower. Default 2.
    pub text_layers: usize,
    /// Attention heads per transformer block (must divide `text_width`). Default 4.
    pub text_heads: i64,
    /// Tokens per caption: longer captions are cut. Default 32.
    pub context_length: usize,
    /// Most tokens the vocabulary learnt from the captions may have. Default 2000.
    pub vocab_size: usize,
    /// The temperature τ = 1/exp(t) at the start. Default 0.07.
    pub init_temperature: f64,
    /// The largest logit scale exp(t) (the smallest τ is its inverse). Default 100.
    pub max_logit_scale: f64,
    /// Smallest area of the random crop, as a fraction of the image. Default 0.9.
    pub crop_min_scale: f32,
}

impl Default for ClipConfig {
    fn default() -> Self {
        ClipConfig {
            text_tower: TextTowerKind::Bag,
            text_width: 128,
            text_layers: 2,
            text_heads: 4,
            context_length: 32,
            vocab_size: 2000,
            init_temperature: 0.07,
            max_logit_scale: MAX_LOGIT_SCALE,
            crop_min_scale: 0.9,
        }
    }
}

impl MethodSection for ClipConfig {
    const NAME: &'static str = "clip";
    const SUMMARY: &'static str =
        "images and captions into one space: symmetric InfoNCE, learned temperature (CLIP)";
    const RUN_FILES: &'static [&'static str] = &[TOKENIZER_FILE];
}

impl MethodSpec for ClipConfig {
    fn plan(&self) -> MethodPlan {
        MethodPlan {
            // The images' indices: their captions are looked up by them.
            targets: Targets::ImageIndices,
            // The global batch's image and text rows are gathered (open_clip's `gather_features`).
            data_parallel: true,
            default_optimizer: OptimizerName::Adamw,
            // 1e-3 with AdamW (open_clip's small-model recipes use 5e-4 to 1e-3).
            default_lr: Some(1e-3),
            micro_batch: MicroBatch::Split,
            ..MethodPlan::default()
        }
    }

    fn check(&self) -> Result<(), SettingError> {
        let key = |k: &str| format!("method.clip.{k}");
        if self.text_width < 8 {
            return Err(format!(
                "{} is {}: give at least 8",
                key("text_width"),
                self.text_width
            )
            .into());
        }
        if self.text_heads < 1 || self.text_width % self.text_heads != 0 {
            return Err(format!(
                "{} is {}: it must divide method.clip.text_width ({})",
                key("text_heads"),
                self.text_heads,
                self.text_width
            )
            .into());
        }
        if !(1..=512).contains(&self.context_length) {
            return Err(format!(
                "{} is {}: give 1 to 512 tokens",
                key("context_length"),
                self.context_length
            )
            .into());
        }
        if !(16..=1_000_000).contains(&self.vocab_size) {
            return Err(format!(
                "{} is {}: give 16 to 1000000",
                key("vocab_size"),
                self.vocab_size
            )
            .into());
        }
        super::positive(&key("init_temperature"), self.init_temperature)?;
        super::positive(&key("max_logit_scale"), self.max_logit_scale)?;
        if 1.0 / self.init_temperature > self.max_logit_scale || self.max_logit_scale < 1.0 {
            return Err(format!(
                "method.clip.init_temperature is {}: its scale 1/τ = {:.1} must lie in [1, method.clip.max_logit_scale = {}]",
                self.init_temperature,
                1.0 / self.init_temperature,
                self.max_logit_scale
            ).into());
        }
        if !(self.crop_min_scale > 0.0 && self.crop_min_scale <= 1.0) {
            return Err(SettingError::out_of_range(
                key("crop_min_scale"),
                self.crop_min_scale,
                "it must be in (0, 1]",
            ));
        }
        Ok(())
    }

    /// One view: the first recipe's crop at this section's scale, its size and normalisation;
    /// nothing that changes what a caption says (flip, colour, blur).
    fn render_views(&self, recipes: Vec<ViewRecipe>) -> Result<Vec<Arc<dyn Views>>, SettingError> {
        let r = recipes.into_iter().next().ok_or("no view recipe")?;
        Ok(vec![Arc::new(ViewRecipe {
            crop_scale: (self.crop_min_scale, 1.0),
            flip_p: 0.0,
            jitter_p: 0.0,
            grayscale_p: 0.0,
            blur_p: 0.0,
            solarize_p: 0.0,
            ..r
        })])
    }

    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        let tokenizer = self.tokenizer(ctx)?;
        let root = vs.root();
        let backbone = ctx.backbone(&root)?;
        let no_bias = nn::LinearConfig {
            bias: false,
            ..Default::default()
        };
        let image_projection = nn::linear(
            &root / "image_projection",
            backbone.out_dim(),
            ctx.projection_dim,
            no_bias,
        );
        let text = TextTower::new(
            &(&root / "text"),
            self.text_tower,
            tokenizer.vocab_size() as i64,
            self.context_length as i64,
            self.text_width,
            self.text_layers,
            self.text_heads,
        );
        let text_projection = nn::linear(
            &root / "text_projection",
            self.text_width,
            ctx.projection_dim,
            no_bias,
        );
        let log_scale = root.var(
            "log_scale",
            &[],
            nn::Init::Const((1.0 / self.init_temperature).ln()),
        );
        let captions = match &ctx.captions {
            // on the model's device, so that a step picks its captions there (no host read)
            Some(c) => Some(crate::device::to_device(&tokenizer.batch(c)?, vs.device())), // [N, L]
            None => None,
        };
        Ok(Box::new(Clip {
            backbone,
            image_projection,
            text,
            text_projection,
            log_scale,
            max_logit_scale: self.max_logit_scale,
            tokenizer,
            captions,
        }))
    }
}

impl ClipConfig {
    /// The run's saved vocabulary when restoring, else one learnt from the training captions.
    fn tokenizer(&self, ctx: &BuildContext) -> anyhow::Result<CaptionTokenizer> {
        if let Some(dir) = &ctx.restore_from {
            let path = dir.join(TOKENIZER_FILE);
            let json = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "cannot read {}: a clip run keeps its captions' vocabulary there",
                    path.display()
                )
            })?;
            return CaptionTokenizer::from_json(&json, self.context_length)
                .with_context(|| format!("{} is damaged", path.display()));
        }
        let captions = ctx.captions.as_ref().context(
            "method clip learns from captions, but the training images have none: give --data an image \
             folder with captions.csv (columns file,caption) or a .txt beside each image, or make the \
             built-in set with `selfsup make-data captioned-shapes --out DIR`",
        )?;
        CaptionTokenizer::train(captions, self.vocab_size, self.context_length)
    }
}

/// The two towers, their projections and the learned log-scale.
pub struct Clip {
    backbone: Backbone,
    image_projection: nn::Linear,
    text: TextTower,
    text_projection: nn::Linear,
    /// t, the logit scale's log: scalar, trained, clipped to [0, ln max_logit_scale].
    log_scale: Tensor,
    max_logit_scale: f64,
    tokenizer: CaptionTokenizer,
    /// The training captions' ids [N, L] (on the model's device), by image index; None when
    /// nothing trains.
    captions: Option<Tensor>,
}

impl Clip {
    fn text_rows(&self, ids: &Tensor) -> Tensor {
        self.text.forward(ids).apply(&self.text_projection) // [n, D]
    }
}

impl Method for Clip {
    /// `u = P_i f(x)`, `v = P_t g(captions[idx])`, each [K, D].
    fn embed_views(
        &mut self,
        views: &[Tensor],
        targets: Option<&Tensor>,
        _ctx: &StepContext,
    ) -> anyhow::Result<Vec<Tensor>> {
        anyhow::ensure!(
            views.len() == 1,
            "clip takes 1 view per image, got {}",
            views.len()
        );
        let idx = targets.context("clip needs the batch's image indices")?;
        let captions = self
            .captions
            .as_ref()
            .context("clip was built without training captions")?;
        let x = &views[0]; // [K, 3, S, S]
        let ids = captions.index_select(0, &idx.to_device(captions.device())); // [K, L]
        let u = self
            .backbone
            .forward_t(x, true)
            .apply(&self.image_projection); // [K, D]
        let v = self.text_rows(&ids); // [K, D]
        Ok(vec![u, v])
    }

    /// `L = clip_loss(u, v, t)` over the global batch. Logs the temperature `1/exp(t)` and the
    /// batch's image→text top-1.
    fn embedding_loss(
        &mut self,
        e: &[Tensor],
        _targets: Option<&Tensor>,
        _ctx: &StepContext,
    ) -> anyhow::Result<StepOutput> {
        let (u, v) = (&e[0], &e[1]); // [K, D] each
        let (u_all, v_all) = (gather_rows(u), gather_rows(v)); // [W·K, D]
        let loss = clip_loss(&u_all, &v_all, &self.log_scale)?;
        let metrics = tch::no_grad(|| {
            let logits = clip_logits(&u_all, &v_all, &self.log_scale); // [B, B]
            let b = logits.size()[0];
            let hits = logits
                .argmax(1, false)
                .eq_tensor(&Tensor::arange(b, (Kind::Int64, logits.device())))
                .to_kind(Kind::Float)
                .mean(Kind::Float);
            let temperature = self.log_scale.exp().reciprocal().detach();
            vec![("temperature", temperature), ("image_to_text_top1", hits)]
        });
        Ok(StepOutput {
            loss,
            embeddings: u.detach(),
            embeddings_b: v.detach(),
            metrics,
        })
    }

    /// Clips t to [0, ln max_logit_scale] after the update.
    fn after_step(&mut self, _ctx: &StepContext) {
        clamp_log_scale(&mut self.log_scale, self.max_logit_scale);
    }

    fn encoder(&self) -> &Backbone {
        &self.backbone
    }

    fn run_files(&self) -> anyhow::Result<Vec<(&'static str, Vec<u8>)>> {
        Ok(vec![(
            TOKENIZER_FILE,
            self.tokenizer.to_json()?.into_bytes(),
        )])
    }

    fn text_image(&self) -> Option<&dyn TextImage> {
        Some(self)
    }
}

impl TextImage for Clip {
    fn embed_images(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| {
            unit_rows(
                &self
                    .backbone
                    .forward_t(x, false)
                    .apply(&self.image_projection),
            )
        })
    }

    fn embed_texts(&self, texts: &[String]) -> anyhow::Result<Tensor> {
        let ids = crate::device::to_device(&self.tokenizer.batch(texts)?, self.device());
        Ok(tch::no_grad(|| unit_rows(&self.text_rows(&ids))))
    }

    fn device(&self) -> tch::Device {
        self.backbone.device()
    }
}

/// Rows divided by their L2 norms.
fn unit_rows(x: &Tensor) -> Tensor {
    x / x
        .norm_scalaropt_dim(2, [1i64].as_slice(), true)
        .clamp_min(1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::testing::{at, tiny_context};
    use tch::Device;

    fn captions() -> Vec<String> {
        let colours = ["red", "green", "blue", "yellow"];
        let shapes = ["circle", "square"];
        (0..8)
            .map(|i| format!("a {} {}", colours[i % 4], shapes[i / 4]))
            .collect()
    }

    fn spec() -> ClipConfig {
        ClipConfig {
            text_width: 16,
            text_heads: 2,
            context_length: 8,
            ..Default::default()
        }
    }

    #[test]
    fn a_few_steps_lower_the_loss_keep_the_clamp_and_embed_texts() {
        for tower in [TextTowerKind::Transformer, TextTowerKind::Bag] {
            let spec = ClipConfig {
                text_tower: tower,
                ..spec()
            };
            spec.check().unwrap();
            let ctx = BuildContext {
                captions: Some(Arc::new(captions())),
                ..tiny_context()
            };
            let vs = nn::VarStore::new(Device::Cpu);
            let mut m = spec.build(&vs, &ctx).unwrap();
            tch::manual_seed(1);
            let views = vec![Tensor::randn([8, 3, 16, 16], (Kind::Float, Device::Cpu))];
            let idx = Tensor::arange(8, (Kind::Int64, Device::Cpu));
            let mut opt = crate::optim::AdamW::new(&vs, (0.9, 0.999), 0.0);
            let first = m.step(&views, Some(&idx), &at(0, 30)).unwrap();
            let t0 = first
                .metrics
                .iter()
                .find(|(k, _)| *k == "temperature")
                .unwrap()
                .1
                .double_value(&[]);
            assert!((t0 - 0.07).abs() < 1e-6, "{t0}");
            let first = first.loss.double_value(&[]);
            // random towers: about ln 8 = 2.08, more where the scale 1/0.07 sharpens chance matches
            assert!(first.is_finite() && first > 1.0, "{first}");
            for s in 0..30 {
                let out = m.step(&views, Some(&idx), &at(s, 30)).unwrap();
                opt.zero_grad();
                out.loss.backward();
                opt.step(1e-2);
                m.after_step(&at(s, 30));
            }
            let last = m
                .step(&views, Some(&idx), &at(30, 30))
                .unwrap()
                .loss
                .double_value(&[]);
            assert!(last < first - 1.0, "{tower:?}: loss {first} → {last}");
            // the clamp holds even when an update pushes the scale past the maximum
            let mut scale = vs.variables()["log_scale"].shallow_clone();
            tch::no_grad(|| {
                let _ = scale.fill_(10.0);
            });
            m.after_step(&at(30, 30));
            let kept = vs.variables()["log_scale"].double_value(&[]);
            assert!((kept - 100f64.ln()).abs() < 1e-6, "{kept}");
            // texts and images land in one space of unit rows
            let ti = m.text_image().unwrap();
            let t = ti
                .embed_texts(&["a red circle".into(), "a blue square".into()])
                .unwrap();
            assert_eq!(t.size(), vec![2, 16]);
            let i = ti.embed_images(&views[0]);
            assert_eq!(i.size(), vec![8, 16]);
            let norms = i.norm_scalaropt_dim(2, [1i64].as_slice(), false);
            assert!((norms - 1.0).abs().max().double_value(&[]) < 1e-5);
            // the vocabulary is a run file, and a restored build reads it back
            let files = m.run_files().unwrap();
            assert_eq!(files[0].0, TOKENIZER_FILE);
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(TOKENIZER_FILE), &files[0].1).unwrap();
            let restored = BuildContext {
                restore_from: Some(dir.path().to_path_buf()),
                ..tiny_context()
            };
            let vs2 = nn::VarStore::new(Device::Cpu);
            spec.build(&vs2, &restored).unwrap();
            assert_eq!(
                vs2.variables()["text.token_embedding.weight"].size(),
                vs.variables()["text.token_embedding.weight"].size()
            );
        }
    }

    #[test]
    fn missing_captions_and_bad_settings_are_named() {
        let vs = nn::VarStore::new(Device::Cpu);
        let e = spec()
            .build(&vs, &tiny_context())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("captions.csv") && e.contains("make-data captioned-shapes"),
            "{e}"
        );
        let gone = BuildContext {
            restore_from: Some("/nonexistent/run".into()),
            ..tiny_context()
        };
        let e = format!("{:#}", spec().build(&vs, &gone).err().unwrap());
        assert!(e.contains("tokenizer.json"), "{e}");
        let heads = ClipConfig {
            text_heads: 3,
            ..spec()
        };
        assert!(heads
            .check()
            .unwrap_err()
            .to_string()
            .contains("method.clip.text_heads"));
        let t = ClipConfig {
            init_temperature: 0.001,
            ..spec()
        };
        assert!(t
            .check()
            .unwrap_err()
            .to_string()
            .contains("method.clip.init_temperature"));
        // the views keep colour and side
        let v = spec().render_views(vec![ViewRecipe::simclr(16)]).unwrap();
        assert_eq!(v.len(), 1);
    }
}
