//! The views a method trains on: the configured recipe, made asymmetric or extended with
//! small multi-crop views as the method's [`ViewPlan`] asks; and the loader's per-image
//! targets.

use super::LoaderData;
use crate::augment::{ViewRecipe, Views};
use crate::config::DataConfig;
use crate::data::Dataset;
use crate::method::{MethodSpec, Targets, ViewPlan};
use anyhow::bail;
use std::sync::Arc;

/// The SimCLR view recipe for images of side `size`, with the configured blur and crop scale.
pub fn view_recipe(data: &DataConfig, size: usize) -> ViewRecipe {
    let mut r = ViewRecipe::simclr(size);
    r.blur_p = data.blur_p;
    r.crop_scale.0 = data.crop_min_scale;
    r
}

/// The recipe of every view of an image: two large views, then `data.small_crops` small ones.
/// - Asymmetric methods' (BYOL's, DINO's) second large view is blurred a tenth as often and
///   solarized with probability 0.2 (Grill et al. 2020, Table 6; DINO appendix).
/// - Multi-crop (SwAV §3.2, DINO): the small views are crops of area `data.small_crop_scale`
///   resized to `data.small_crop_size` (0: `3/7` of the large side, 96 px for 224 as in the
///   papers, 14 px for CIFAR's 32).
pub fn view_recipes(data: &DataConfig, plan: ViewPlan, size: usize) -> Vec<ViewRecipe> {
    let a = view_recipe(data, size);
    let mut b = a.clone();
    if plan.asymmetric {
        b.blur_p = a.blur_p * 0.1;
        b.solarize_p = 0.2;
    }
    let mut small = a.clone();
    small.out_size = small_crop_size(data, size);
    small.crop_scale = data.small_crop_scale;
    let mut recipes = vec![a, b];
    recipes.extend(std::iter::repeat_n(small, data.small_crops));
    recipes
}

/// What the loader renders for each image under `spec`: its plan's recipes at crop size
/// `size`, cut up as the method asks ([`MethodSpec::render_views`]), each checked.
pub fn method_views(
    data: &DataConfig,
    spec: &dyn MethodSpec,
    size: usize,
) -> anyhow::Result<Vec<Arc<dyn Views>>> {
    let views = spec
        .render_views(view_recipes(data, spec.plan().views, size))
        .map_err(anyhow::Error::msg)?;
    for v in &views {
        v.validate().map_err(anyhow::Error::msg)?;
    }
    Ok(views)
}

/// Side of the small multi-crop views for large views of side `size`.
pub fn small_crop_size(data: &DataConfig, size: usize) -> usize {
    match data.small_crop_size {
        0 => ((size * 3) as f64 / 7.0).round().max(1.0) as usize,
        s => s,
    }
}

/// What the loader reads: the images, and the per-image targets the method trains on.
pub fn loader_data(train: &Dataset, spec: &dyn MethodSpec) -> anyhow::Result<LoaderData> {
    let targets = match spec.plan().targets {
        Targets::Nothing | Targets::ViewLabels => None,
        Targets::ClassLabels => {
            let Some(l) = &train.labels else {
                bail!(
                    "this method trains on class labels, but the training images have none: give --data a folder \
                     with one sub-folder per class (or labelled IDX/CIFAR files)"
                );
            };
            Some(Arc::new(l.iter().map(|&y| y as i64).collect()))
        }
        Targets::ImageIndices => Some(Arc::new((0..train.len() as i64).collect())),
    };
    Ok(LoaderData {
        images: Arc::new(train.images.clone()),
        targets,
        captions: train.captions.clone().map(Arc::new),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asymmetric_plans_change_the_second_view_only() {
        let data = DataConfig {
            blur_p: 1.0,
            ..Default::default()
        };
        let r = view_recipes(&data, ViewPlan::default(), 32);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0], r[1]);
        assert_eq!(r[0].crop_scale.0, data.crop_min_scale);
        let plan = ViewPlan {
            asymmetric: true,
            multi_crop: false,
        };
        let r = view_recipes(&data, plan, 32);
        assert_eq!((r[0].blur_p, r[0].solarize_p), (1.0, 0.0));
        assert!((r[1].blur_p - 0.1).abs() < 1e-6 && r[1].solarize_p == 0.2);
    }

    #[test]
    fn multi_crop_adds_small_views_after_the_two_large_ones() {
        let mut data = DataConfig {
            small_crops: 3,
            ..Default::default()
        };
        let plan = ViewPlan {
            asymmetric: false,
            multi_crop: true,
        };
        let r = view_recipes(&data, plan, 32);
        assert_eq!(r.len(), 5);
        assert_eq!((r[0].out_size, r[1].out_size), (32, 32));
        for small in &r[2..] {
            assert_eq!(small.out_size, 14, "3/7 of 32");
            assert_eq!(small.crop_scale, (0.05, 0.14));
        }
        assert_eq!(view_recipes(&data, plan, 224)[4].out_size, 96);
        data.small_crop_size = 20;
        assert_eq!(view_recipes(&data, plan, 32)[2].out_size, 20);
    }
}
