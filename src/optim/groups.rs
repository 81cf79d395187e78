//! Parameter groups: how the trainer's optimiser treats each trainable variable, as the
//! method's [`ParamPlan`] declares it. Nothing here reads a variable's name: a group is a list
//! of the variables themselves (tensors, matched by identity), which the method collects where
//! it creates them.
//!
//! | group          | decay (AdamW)   | learning rate                          |
//! |----------------|-----------------|----------------------------------------|
//! | (default)      | if ≥ 2-D        | the schedule's (warm-up + cosine)      |
//! | `no_decay`     | never           | the schedule's                         |
//! | `constant_lr`  | if ≥ 2-D        | the peak `optim.lr` in every step      |
//! | `own_update`   | —               | left out: the method updates them      |
//!
//! 1-D variables (norms, biases) are never decayed by AdamW (timm's
//! `param_groups_weight_decay`); SGD's coupled decay applies to every variable, as the SimCLR
//! CIFAR recipe does.

use tch::{nn::VarStore, Tensor};

/// A method's parameter groups (every list may be empty).
#[derive(Debug, Default)]
pub struct ParamPlan {
    /// Never decayed though more than 1-D: a ViT's class token and position embeddings, MAE's
    /// mask token.
    pub no_decay: Vec<Tensor>,
    /// Trained at the peak learning rate in every step, outside the warm-up and cosine
    /// schedule (SimSiam's predictor, §4.3 of the paper).
    pub constant_lr: Vec<Tensor>,
    /// Updated by the method itself in `after_step` (the context encoder's discriminator):
    /// the trainer's optimiser leaves them alone.
    pub own_update: Vec<Tensor>,
}

/// One trainable variable as an optimiser updates it.
#[derive(Debug)]
pub struct Param {
    /// Its name in the store: the key of its state in checkpoints, and its place in the order.
    pub name: String,
    pub tensor: Tensor,
    /// AdamW decays it.
    pub decay: bool,
    /// A learning rate held whatever the step's is; None: the step's.
    pub held_lr: Option<f64>,
}

impl Param {
    /// A scheduled variable, decayed when at least 2-D.
    pub fn scheduled(name: String, tensor: Tensor) -> Self {
        Param {
            decay: tensor.dim() > 1,
            name,
            tensor,
            held_lr: None,
        }
    }
}

fn contains(list: &[Tensor], t: &Tensor) -> bool {
    list.iter().any(|x| x.data_ptr() == t.data_ptr())
}

impl ParamPlan {
    /// The trainable variables of `vs` in name order (see [`super::trainable_by_name`]), as
    /// this plan groups them: `own_update` ones left out, `constant_lr` ones held at `peak_lr`.
    pub fn params(&self, vs: &VarStore, peak_lr: f64) -> Vec<Param> {
        super::trainable_by_name(vs)
            .into_iter()
            .filter(|(_, t)| !contains(&self.own_update, t))
            .map(|(name, t)| {
                let mut p = Param::scheduled(name, t);
                p.decay &= !contains(&self.no_decay, &p.tensor);
                if contains(&self.constant_lr, &p.tensor) {
                    p.held_lr = Some(peak_lr);
                }
                p
            })
            .collect()
    }
}

/// Every trainable variable of `vs` scheduled, in name order (the default plan).
pub fn scheduled(vs: &VarStore) -> Vec<Param> {
    ParamPlan::default().params(vs, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device};

    #[test]
    fn groups_follow_the_plan_not_the_names() {
        let vs = VarStore::new(Device::Cpu);
        let p = vs.root();
        // names that the old name rules would have caught, in the wrong groups on purpose
        let token = p.var("weight", &[1, 1, 4], nn::Init::Const(0.0));
        let matrix = p.var("position_table", &[3, 4], nn::Init::Const(0.0));
        let bias = p.var("b", &[4], nn::Init::Const(0.0));
        let head = (&p / "head").var("w", &[2, 2], nn::Init::Const(0.0));
        let disc = (&p / "d").var("w", &[2, 2], nn::Init::Const(0.0));
        let _stat = p.zeros_no_train("running_mean", &[4]);
        let plan = ParamPlan {
            no_decay: vec![token.shallow_clone()],
            constant_lr: vec![head.shallow_clone()],
            own_update: vec![disc.shallow_clone()],
        };
        let got: Vec<(String, bool, Option<f64>)> = plan
            .params(&vs, 0.3)
            .into_iter()
            .map(|q| (q.name, q.decay, q.held_lr))
            .collect();
        assert_eq!(
            got,
            vec![
                ("b".into(), false, None), // 1-D: never decayed
                ("head.w".into(), true, Some(0.3)),
                ("position_table".into(), true, None), // a name is only a name
                ("weight".into(), false, None),        // declared no-decay
            ]
        );
        assert_eq!(matrix.dim(), 2);
        assert_eq!(bias.dim(), 1);
    }

    #[test]
    fn the_default_plan_schedules_every_trainable_variable() {
        let vs = VarStore::new(Device::Cpu);
        let _l = nn::linear(vs.root() / "l", 3, 2, Default::default());
        let names: Vec<(String, bool)> = scheduled(&vs)
            .into_iter()
            .map(|q| (q.name, q.decay))
            .collect();
        assert_eq!(
            names,
            vec![("l.bias".into(), false), ("l.weight".into(), true)]
        );
    }
}
