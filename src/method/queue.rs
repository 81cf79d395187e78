//! MoCo's queue of negative keys (He et al. 2020, §3.2): a FIFO of the last S keys, so that
//! every query sees S negatives whatever the batch size.

use tch::{nn, Kind, Tensor};

/// A FIFO of `size` keys [S, D], kept in the variable store (`<path>.keys`, `<path>.ptr`) so
/// that checkpoints save it and a resumed run continues with the same negatives. Starts full
/// of random unit vectors, as MoCo's does.
pub struct Queue {
    keys: Tensor,
    /// \[1\] float: the row the next key is written to.
    ptr: Tensor,
}

impl Queue {
    pub fn new(p: &nn::Path, size: i64, dim: i64) -> Self {
        let keys = p.zeros_no_train("keys", &[size, dim]);
        let ptr = p.zeros_no_train("ptr", &[1]);
        tch::no_grad(|| {
            let r = Tensor::randn([size, dim], (Kind::Float, keys.device()));
            let r = &r / r.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
            keys.shallow_clone().copy_(&r);
        });
        Queue { keys, ptr }
    }

    pub fn size(&self) -> i64 {
        self.keys.size()[0]
    }

    /// Row the next key goes to.
    pub fn ptr(&self) -> i64 {
        self.ptr.double_value(&[0]) as i64
    }

    /// A snapshot of the keys [S, D] (detached; later pushes do not change it).
    pub fn negatives(&self) -> Tensor {
        self.keys.detach().copy()
    }

    /// Enqueues `keys` [B, D], overwriting the oldest; with B ≥ S only the last S stay. All
    /// on the queue's device: rows `(ptr + 0..B) mod S` are written, ptr ← (ptr + B) mod S
    /// (no read of the pointer to the host).
    pub fn push(&self, keys: &Tensor) {
        let s = self.size();
        let keys = keys.detach();
        let b = keys.size()[0];
        let keys = if b > s {
            keys.narrow(0, b - s, s)
        } else {
            keys
        };
        let b = keys.size()[0];
        tch::no_grad(|| {
            let start = self.ptr.to_kind(Kind::Int64); // [1]
            let rows = (Tensor::arange(b, (Kind::Int64, self.keys.device())) + &start).remainder(s); // [B]
            let _ =
                self.keys
                    .shallow_clone()
                    .index_copy_(0, &rows, &keys.to_kind(self.keys.kind()));
            let next = (&self.ptr + b as f64).remainder(s as f64);
            self.ptr.shallow_clone().copy_(&next);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn rows(v: &[f32]) -> Tensor {
        Tensor::from_slice(v).view([-1, 1])
    }

    fn contents(q: &Queue) -> Vec<f32> {
        Vec::<f32>::try_from(&q.negatives().view(-1)).unwrap()
    }

    #[test]
    fn starts_with_unit_keys_and_is_fifo_with_wrap_around() {
        let vs = nn::VarStore::new(Device::Cpu);
        let q = Queue::new(&(vs.root() / "queue"), 4, 1);
        assert!(contents(&q).iter().all(|x| (x.abs() - 1.0).abs() < 1e-6));
        q.push(&rows(&[1.0, 2.0, 3.0]));
        assert_eq!(q.ptr(), 3);
        assert_eq!(&contents(&q)[..3], &[1.0, 2.0, 3.0]);
        q.push(&rows(&[4.0, 5.0])); // wraps: row 3, then row 0
        assert_eq!(contents(&q), vec![5.0, 2.0, 3.0, 4.0]);
        assert_eq!(q.ptr(), 1);
        q.push(&rows(&[6.0, 7.0, 8.0, 9.0, 10.0])); // more than S: the last 4 stay
        let mut c = contents(&q);
        c.sort_by(f32::total_cmp);
        assert_eq!(c, vec![7.0, 8.0, 9.0, 10.0]);
        assert!(
            vs.variables().contains_key("queue.keys") && vs.variables().contains_key("queue.ptr")
        );
    }

    #[test]
    fn a_snapshot_does_not_see_later_pushes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let q = Queue::new(&vs.root(), 3, 1);
        let before = q.negatives();
        q.push(&rows(&[42.0]));
        assert!(Vec::<f32>::try_from(&before.view(-1))
            .unwrap()
            .iter()
            .all(|&x| x != 42.0));
        assert!(contents(&q).contains(&42.0));
    }
}
