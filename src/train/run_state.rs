//! Where a run is: its state as every checkpoint stores it, the time budget's plan included.

use crate::config::TrainConfig;
use serde::{Deserialize, Serialize};

/// Where training is in its run; stored in the checkpoint's metadata.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunState {
    /// Steps completed (the next step to run).
    pub step: u64,
    pub total_steps: u64,
    /// The time budget's and progressive resolution's plan (saved flat, as before).
    #[serde(flatten)]
    pub budget: BudgetState,
    /// Wall-clock seconds of training so far, over all sessions of the run.
    pub train_seconds: f64,
    pub config: TrainConfig,
    /// The training images the run was planned on (absent in runs from before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<super::resume::DataFingerprint>,
}

/// What a time budget (`train.minutes`, see train/budget.rs) and progressive resolution
/// decided for the run, kept in every checkpoint so that a resumed run keeps it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct BudgetState {
    /// `total_steps` was fitted to the time budget `train.minutes` (and is kept on resume).
    #[serde(default)]
    pub fitted: bool,
    /// The warm-up steps of the fitted schedule (kept when a re-timing refits the length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_steps: Option<u64>,
    /// The steps after which the time budget re-timed the run (train/budget.rs): once in the
    /// warm-up, then every tenth of the run (with progressive resolution, once just after the
    /// switch to full size).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retimed_at: Vec<u64>,
    /// The run's length in steps after each of those re-timings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retimed_lengths: Vec<u64>,
    /// Progressive resolution: the first step at the full crop size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_step: Option<u64>,
    /// Progressive resolution under a time budget: seconds per full-size step over seconds per
    /// early step, as the calibration measured them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_over_early: Option<f64>,
}

impl RunState {
    /// The state of a run not yet started: step 0 of `total_steps`, nothing fitted, re-timed
    /// or trained, no data fingerprint.
    pub fn fresh(config: &TrainConfig, total_steps: u64) -> Self {
        RunState {
            step: 0,
            total_steps,
            budget: BudgetState::default(),
            train_seconds: 0.0,
            config: config.clone(),
            data: None,
        }
    }
}
