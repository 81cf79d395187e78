//! Checking a config's values once, before any work starts.

use super::{ConfigError, TrainConfig};
use crate::method::{registry, MicroBatch};

/// `a, b and c`.
pub fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

impl TrainConfig {
    /// Checks every value once; the message names the key and the value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        self.model.validate_backbone(self.planned_crop_size())?;
        if self.model.projection_dim < 1 || self.model.projection_hidden.is_some_and(|h| h < 1) {
            return bad("model.projection_dim and model.projection_hidden must be ≥ 1".into());
        }
        let spec = self.method.spec()?;
        let o = &self.optim;
        if let Some(lr) = o.lr.filter(|lr| !(lr.is_finite() && *lr > 0.0)) {
            return bad(format!("optim.lr is {lr}: it must be > 0"));
        }
        if !(o.final_lr.is_finite() && o.final_lr >= 0.0) {
            return bad(format!("optim.final_lr is {}: it must be ≥ 0", o.final_lr));
        }
        if !(0.0..1.0).contains(&o.momentum) {
            return bad(format!(
                "optim.momentum is {}: it must be in [0, 1)",
                o.momentum
            ));
        }
        if let Some(wd) = o.weight_decay.filter(|w| !(w.is_finite() && *w >= 0.0)) {
            return bad(format!("optim.weight_decay is {wd}: it must be ≥ 0"));
        }
        if let Some((b1, b2)) = o.betas {
            if !((0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2)) {
                return bad(format!(
                    "optim.betas is [{b1}, {b2}]: both must be in [0, 1) (AdamW's are [0.9, 0.95])"
                ));
            }
        }
        if !(o.trust_coefficient.is_finite() && o.trust_coefficient > 0.0) {
            return bad(format!(
                "optim.trust_coefficient is {}: it must be > 0 (LARS's is 0.001)",
                o.trust_coefficient
            ));
        }
        if !(o.warmup_epochs.is_finite() && o.warmup_epochs >= 0.0) {
            return bad(format!(
                "optim.warmup_epochs is {}: it must be ≥ 0",
                o.warmup_epochs
            ));
        }
        let t = &self.train;
        if t.epochs == 0 {
            return bad("train.epochs is 0: it must be ≥ 1".into());
        }
        if let Some(m) = t.minutes {
            if !(m.is_finite() && m > 0.0) {
                return bad(format!(
                    "train.minutes is {m}: it must be > 0 (e.g. --minutes 30)"
                ));
            }
        }
        if let Some(m) = t
            .eval_at_minutes
            .iter()
            .find(|m| !(m.is_finite() && **m > 0.0))
        {
            return bad(format!(
                "train.eval_at_minutes holds {m}: every entry must be > 0 minutes (e.g. [2, 5, 10, 20])"
            ));
        }
        if t.batch_size < 2 {
            return bad(format!(
                "train.batch_size is {}: contrastive learning needs ≥ 2 images per batch",
                t.batch_size
            ));
        }
        if let Some(m) = t.micro_batch {
            if m < 2 || m > t.batch_size {
                return bad(format!(
                    "train.micro_batch is {m}: it must be in [2, train.batch_size = {}]",
                    t.batch_size
                ));
            }
        }
        if !(t.progress_seconds.is_finite() && t.progress_seconds > 0.0) {
            return bad(format!(
                "train.progress_seconds is {}: it must be > 0 (e.g. 30)",
                t.progress_seconds
            ));
        }
        if !(t.collective_timeout.is_finite() && t.collective_timeout > 0.0) {
            return bad(format!(
                "train.collective_timeout is {}: it must be > 0 seconds (e.g. 300)",
                t.collective_timeout
            ));
        }
        t.device.parse::<crate::device::DeviceChoice>()?;
        crate::precision::Precision::resolve(&t.precision, tch::Device::Cpu)?;
        if t.checkpoint_every == 0 || t.log_every == 0 {
            return bad("train.checkpoint_every and train.log_every must be ≥ 1".into());
        }
        let knn_t_positive = self.eval.knn_t.is_finite() && self.eval.knn_t > 0.0;
        if self.eval.knn_k == 0 || !knn_t_positive || self.eval.batch_size == 0 {
            return bad("eval.knn_k and eval.batch_size must be ≥ 1 and eval.knn_t > 0".into());
        }
        if self.data.image_size == Some(0) || self.data.synthetic_size < 8 {
            return bad("data.image_size must be ≥ 1 and data.synthetic_size ≥ 8".into());
        }
        if let Some(c) = self.model.crop_size {
            if !(4..=crate::data::MAX_IMAGE_SIZE).contains(&c) {
                return bad(format!(
                    "model.crop_size (--crop-size) is {c}: it must be between 4 and {} pixels \
                     (32 suits CIFAR-sized images, 96-224 photos with --stem imagenet)",
                    crate::data::MAX_IMAGE_SIZE
                ));
            }
        }
        let st = self.data.stored_scale;
        if !(st.is_finite() && (1.0..=4.0).contains(&st)) {
            return bad(format!(
                "data.stored_scale is {st}: it must be between 1 and 4 (1.14 stores images with \
                 their shorter side 1.14 × the crop size)"
            ));
        }
        if self.stored_side() > crate::data::MAX_IMAGE_SIZE {
            return bad(format!(
                "data.stored_scale × crop size is {} pixels, more than {}: lower one of them",
                self.stored_side(),
                crate::data::MAX_IMAGE_SIZE
            ));
        }
        let s = self.data.crop_min_scale;
        if !(s > 0.0 && s <= 1.0) {
            return bad(format!(
                "data.crop_min_scale is {s}: it must be in (0, 1] (SimCLR uses 0.08)"
            ));
        }
        if let (Some(_), MicroBatch::Refused(why)) = (t.micro_batch, spec.plan().micro_batch) {
            let takers = registry::names_where(|s| s.plan().micro_batch == MicroBatch::Split);
            return bad(format!(
                "train.micro_batch cannot serve method {:?}: {why}. Micro-batching serves {}",
                self.method.name,
                and_list(&takers)
            ));
        }
        let d = &self.data;
        if d.small_crops > 0 && !spec.plan().views.multi_crop {
            let takers = registry::names_where(|s| s.plan().views.multi_crop);
            return bad(format!(
                "data.small_crops is {} but method {:?} trains on 2 views: multi-crop works with {}",
                d.small_crops,
                self.method.name,
                and_list(&takers)
            ));
        }
        if d.small_crops > 16 {
            return bad(format!(
                "data.small_crops is {}: at most 16 (the papers use 6 to 10)",
                d.small_crops
            ));
        }
        if d.progressive_size > 0 && !(0.25..=0.95).contains(&d.progressive_fraction) {
            return bad(format!(
                "data.progressive_fraction is {}: the share of steps at data.progressive_size must be \
                 in [0.25, 0.95] (e.g. 0.75)",
                d.progressive_fraction
            ));
        }
        let (lo, hi) = d.small_crop_scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            return bad(format!(
                "data.small_crop_scale is [{lo}, {hi}]: it must satisfy 0 < lo ≤ hi ≤ 1 (SwAV: [0.05, 0.14])"
            ));
        }
        if !(0.0..=1.0).contains(&self.data.blur_p) {
            return bad(format!(
                "data.blur_p is {}: it must be in [0, 1]",
                self.data.blur_p
            ));
        }
        Ok(())
    }
}
