//! One JSON line in `metrics.jsonl` every `train.log_every` steps and at the last: the loss,
//! the learning rate, the gradient norm, the speed since the last line, the training clock,
//! collapse diagnostics of the step's embeddings, and the method's own figures.

use super::{RunObserver, Session};
use crate::eval::{alignment, embedding_std, uniformity};
use crate::train::trainer::{Flow, StepRecord, Trainer};

/// The metrics log, with the window its speed is measured over.
pub struct MetricsLog {
    /// The clock and the session's steps at the last line.
    window: (f64, u64),
    /// fp16 steps skipped on overflow in this session.
    skipped: u64,
}

impl MetricsLog {
    /// Measures its first speed from the session's start.
    pub fn new(s: &Session) -> Self {
        MetricsLog {
            window: (s.clock.now(), 0),
            skipped: 0,
        }
    }
}

impl RunObserver for MetricsLog {
    fn after_step(
        &mut self,
        r: &StepRecord,
        tr: &Trainer,
        s: &mut Session,
    ) -> anyhow::Result<Flow> {
        let t = &s.cfg.train;
        self.skipped += u64::from(r.done.skipped);
        let done = r.ctx.step + 1;
        if !(done.is_multiple_of(t.log_every as u64) || done == r.ctx.total_steps) {
            return Ok(Flow::Continue);
        }
        let (loss, out) = (r.done.loss, &r.done.out);
        let now = s.clock.now();
        let secs = now - self.window.0;
        let steps = done - s.start - self.window.1;
        let ips = steps as f64 * t.batch_size as f64 / secs.max(1e-9);
        self.window = (now, done - s.start);
        s.console
            .bar
            .set_message(format!("loss {loss:.4} | {ips:.0} img/s"));
        let mut line = serde_json::json!({
            "step": done, "epoch": (done - 1) / r.ctx.steps_per_epoch, "loss": loss,
            "lr": r.ctx.lr, "grad_norm": r.done.grad_norm, "images_per_s": ips,
            "train_minutes": s.clock.trained_s() / 60.0,
            "embedding_std": embedding_std(&out.embeddings),
            "alignment": alignment(&out.embeddings, &out.embeddings_b),
            "uniformity": uniformity(&out.embeddings),
        });
        if let Some(scaler) = &tr.mode.scaler {
            // fp16: the loss scale and the overflowed steps so far in this session
            line["loss_scale"] = serde_json::json!(scaler.scale);
            line["skipped_steps"] = serde_json::json!(self.skipped);
        }
        for (name, value) in &out.metrics {
            line[*name] = serde_json::json!(value.double_value(&[]));
        }
        if crate::dist::is_root() {
            s.run.log(&line)?;
        }
        Ok(Flow::Continue)
    }
}
