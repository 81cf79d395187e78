//! kNN evaluations at given minutes of training (`train.eval_at_minutes`), on rank 0, with
//! the training clock stopped meanwhile; each is a line in the metrics log and on the
//! console.

use super::{RunObserver, Session};
use crate::data::Dataset;
use crate::eval::{EvalKind, FrozenEncoder};
use crate::train::trainer::{Flow, StepRecord, Trainer};

pub struct KnnOnTheWay<'a> {
    pub train: &'a Dataset,
    pub test: &'a Dataset,
    pub due: Due,
}

/// The minutes of training still to evaluate at, ascending.
#[derive(Debug, PartialEq)]
pub struct Due {
    pub pending: Vec<f64>,
}

impl Due {
    /// The evaluations at `minutes` still to come for a run that has trained `trained_min`
    /// minutes, before the end of a budget of `budget` minutes.
    pub fn new(minutes: &[f64], trained_min: f64, budget: Option<f64>) -> Self {
        let mut pending: Vec<f64> = minutes
            .iter()
            .copied()
            .filter(|&m| m > trained_min && budget.is_none_or(|b| m < b))
            .collect();
        pending.sort_by(f64::total_cmp);
        Due { pending }
    }

    /// Whether an evaluation is due at `trained_min`; drops every minute it passed (one
    /// evaluation however many were passed within a step).
    pub fn take_due(&mut self, trained_min: f64) -> bool {
        let due = self.pending.first().is_some_and(|&m| trained_min >= m);
        self.pending.retain(|&m| trained_min < m);
        due
    }
}

impl RunObserver for KnnOnTheWay<'_> {
    fn after_step(&mut self, r: &StepRecord, t: &Trainer, s: &mut Session) -> anyhow::Result<Flow> {
        let trained_min = s.clock.trained_s() / 60.0;
        if !self.due.take_due(trained_min) || !crate::dist::is_root() {
            return Ok(Flow::Continue);
        }
        let done = r.ctx.step + 1;
        let started = s.clock.now();
        let encoder = FrozenEncoder {
            net: t.model.method.encoder(),
            channels_last: s.cfg.model.uses_channels_last(),
            input_side: s.cfg.crop_size(&self.train.images),
            layer: Default::default(),
        };
        let e = crate::eval::evaluate(encoder, self.train, self.test, &s.cfg.eval, EvalKind::Knn)?;
        s.console.say(format!(
            "at {trained_min:.2} min of training (step {done}): kNN top-1 {:.2} % (evaluated in {:.0} s, off the clock)",
            100.0 * e.knn_top1,
            s.clock.now() - started
        ));
        s.run.log(&serde_json::json!({
            "step": done, "train_minutes": trained_min, "eval": e,
        }))?;
        s.clock.pause(s.clock.now() - started);
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_already_trained_or_past_the_budget_are_dropped_and_passed_ones_fold() {
        let mut k = Due::new(&[9.0, 1.0, 3.0, 4.0, 30.0], 2.0, Some(10.0));
        assert_eq!(k.pending, vec![3.0, 4.0, 9.0]);
        assert!(!k.take_due(2.9));
        assert!(
            k.take_due(4.5),
            "3 and 4 passed within one step: one evaluation"
        );
        assert_eq!(k.pending, vec![9.0]);
        assert!(!k.take_due(8.0));
        assert!(k.take_due(9.0));
        assert!(k.pending.is_empty() && !k.take_due(100.0));
    }
}
