//! Reconstruction pictures beside each checkpoint this process writes (self-prediction
//! methods; see [`crate::train::pictures`]).

use super::{RunObserver, Session};
use crate::train::pictures::Pictures;
use crate::train::trainer::{Flow, StepRecord, Trainer};

pub struct PictureWriter<'a> {
    pub pictures: &'a Pictures,
    /// The step pictured last.
    done: Option<u64>,
}

impl<'a> PictureWriter<'a> {
    pub fn new(pictures: &'a Pictures) -> Self {
        PictureWriter {
            pictures,
            done: None,
        }
    }
}

impl RunObserver for PictureWriter<'_> {
    fn after_step(&mut self, _: &StepRecord, t: &Trainer, s: &mut Session) -> anyhow::Result<Flow> {
        if let Some(step) = s.checkpointed.filter(|&c| self.done != Some(c)) {
            let dir = s.run.dir.join("reconstructions");
            self.pictures.write(t.model.method.as_ref(), &dir, step)?;
            self.done = Some(step);
        }
        Ok(Flow::Continue)
    }
}
