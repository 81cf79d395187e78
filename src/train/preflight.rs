//! Everything a pretraining refuses before its run folder is written.

use super::{loader_data, memory, method_views, LoaderData};
use crate::augment::Views;
use crate::config::TrainConfig;
use crate::data::Splits;
use anyhow::bail;
use std::sync::Arc;

/// The loader's data, its views, and (progressive resolution) the early steps' views.
pub type Planned = (LoaderData, Vec<Arc<dyn Views>>, Option<Vec<Arc<dyn Views>>>);

/// Everything refused before the run folder is written: too few images, a batch or a
/// method's state that cannot fit in memory, view sizes the images cannot give, labels the
/// method needs and the data lacks. Returns the loader's data, its views and (progressive
/// resolution) the early steps' views.
pub fn preflight(
    cfg: &TrainConfig,
    splits: &Splits,
    spec: &dyn crate::method::MethodSpec,
) -> anyhow::Result<Planned> {
    let t = &cfg.train;
    let n = splits.train.len();
    if n < 2 {
        bail!(
            "the training split has {n} image(s): self-supervised training compares images in a batch \
             and needs at least 2 (and ideally hundreds); add images to --data"
        );
    }
    if n < t.batch_size {
        bail!(
            "train.batch_size is {} but the training split has only {n} images: lower --batch-size to at most {n}",
            t.batch_size
        );
    }
    crate::dist::local_batch(t.batch_size).map_err(anyhow::Error::msg)?;
    if crate::dist::size() > 1 && !spec.plan().data_parallel {
        bail!(
            "method.name = {} does not run data-parallel yet (its loss or state is not shared across \
             ranks): run it in one process, or use one of {}",
            cfg.method.name,
            crate::method::registry::names_where(|s| s.plan().data_parallel).join(", ")
        );
    }
    if let (Some(w), true) = (
        spec.data_warning(&splits.train.images),
        crate::dist::is_root(),
    ) {
        eprintln!("warning: {w}");
    }
    let size = cfg.crop_size(&splits.train.images);
    let views = method_views(&cfg.data, spec, size)?;
    if let Some(small) = views.iter().skip(2).find(|v| v.shape().side > size) {
        bail!(
            "data.small_crop_size is {} but the crop size is {size} px: small crops must be at most {size}",
            small.shape().side
        );
    }
    if let Some(mut available) = memory::available_bytes() {
        if let Some((bytes, what, setting)) =
            spec.plan().state.map(|s| s.bytes(cfg.model.projection_dim))
        {
            available = memory::check_state_fits(bytes, &what, setting, available)
                .map_err(anyhow::Error::msg)?;
        }
        let shape = memory::StepShape {
            batch: t.batch_size,
            views: views
                .iter()
                .map(|v| (v.shape().crops, v.shape().side))
                .collect(),
            tiled: !spec.plan().similarity_matrix,
            micro_batch: t.micro_batch,
            splits: spec.plan().micro_batch == crate::method::MicroBatch::Split,
        };
        memory::check_fits(&cfg.model.backbone_config(size), &shape, available)
            .map_err(anyhow::Error::msg)?;
    }
    let early = match cfg.data.progressive_size {
        0 => None,
        p if p >= size => bail!(
            "data.progressive_size is {p} px but the crop size is {size} px: the early views must be \
             smaller (e.g. {}), or set it to 0 to train at one size",
            (size * 3 / 4).max(1)
        ),
        _ if cfg.model.is_vit() => bail!(
            "data.progressive_size: a ViT's position embeddings fix its input size, so it cannot \
             change resolution during the run; use a ResNet backbone or set it to 0"
        ),
        p => Some(method_views(&cfg.data, spec, p)?),
    };
    Ok((loader_data(&splits.train, spec)?, views, early))
}
