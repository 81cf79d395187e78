//! Named presets: settings measured together for a purpose, applied under the config file,
//! the flags and `--set` (each of which still overrides them): `--preset NAME`.

/// A preset: its name, what it is for, and its `section.key=value` settings.
pub struct Preset {
    pub name: &'static str,
    pub about: &'static str,
    pub settings: &'static [&'static str],
}

/// Every preset. Each setting's reason and measurement: docs/src/fast-cpu-search.md.
pub const PRESETS: &[Preset] = &[Preset {
    name: "fast-cpu",
    about: "a good encoder fast on a few CPU cores: a 30-minute budget (--minutes sets \
            another), SimCLR at batch 128 with the learning rate scaled by √(B/256), crops of \
            at least 20 % of the image, 24-px views for the first three quarters of the run, \
            then the images' 32 (the guide, \"A good encoder fast\")",
    settings: FAST_CPU,
}];

/// `fast-cpu` (measured in docs/src/fast-cpu-search.md).
const FAST_CPU: &[&str] = &[
    "method.name=\"simclr\"",
    "train.minutes=30",
    // an upper bound only: the budget sets the length
    "train.epochs=100",
    "train.batch_size=128",
    "optim.lr=0.21",
    "data.crop_min_scale=0.2",
    "data.progressive_size=24",
    "data.progressive_fraction=0.75",
];

/// The names of the presets.
pub fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.name).collect()
}

/// The settings of preset `name`; an unknown name lists the presets.
pub fn settings(name: &str) -> Result<Vec<String>, String> {
    PRESETS
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.settings.iter().map(|s| s.to_string()).collect())
        .ok_or_else(|| {
            format!(
                "--preset {name}: no such preset; the presets are {}",
                names().join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainConfig;

    #[test]
    fn every_preset_loads_and_changes_the_defaults() {
        for p in PRESETS {
            let cfg = TrainConfig::load(None, &settings(p.name).unwrap())
                .unwrap_or_else(|e| panic!("preset {}: {e}", p.name));
            assert_ne!(
                cfg,
                TrainConfig::load(None, &[]).unwrap(),
                "preset {} changes nothing",
                p.name
            );
        }
    }

    #[test]
    fn fast_cpu_is_the_measured_recipe() {
        let cfg = TrainConfig::load(None, &settings("fast-cpu").unwrap()).unwrap();
        assert_eq!(cfg.train.minutes, Some(30.0));
        assert_eq!((cfg.train.batch_size, cfg.optim.lr), (128, Some(0.21)));
        assert_eq!(
            (cfg.data.progressive_size, cfg.data.crop_min_scale),
            (24, 0.2)
        );
    }

    #[test]
    fn an_unknown_preset_lists_the_known_ones() {
        let e = settings("fastest").unwrap_err();
        assert!(e.contains("fastest") && e.contains("fast-cpu"), "{e}");
    }
}
