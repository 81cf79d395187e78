//! Metric learning with labels: a small ResNet embedding of the built-in synthetic shapes
//! trained with the triplet loss (batch-hard or batch-all mining over class labels) or the
//! margin contrastive loss (similar / dissimilar pairs from the labels). Prints kNN accuracy on
//! the test split before and after.
//!
//!     cargo run --release --example triplet_labels -- batch_hard
//!     cargo run --release --example triplet_labels -- batch_all
//!     cargo run --release --example triplet_labels -- margin

use selfsup::backbone::{ResNet, ResNetConfig, Stem};
use selfsup::data::{synthetic, Dataset};
use selfsup::eval::knn_accuracy;
use selfsup::loss::{batch_all_triplet, batch_hard_triplet, margin_contrastive};
use selfsup::rng::Rng;
use tch::nn::{self, Module, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// Images [N, 16, 16, 3] u8 → [N, 3, 16, 16] f32 centred, and labels [N].
fn tensors(d: &Dataset) -> (Tensor, Tensor) {
    let n = d.len() as i64;
    let x = Tensor::from_slice(&d.images.concat_pixels())
        .to_kind(Kind::Float)
        .view([n, 16, 16, 3])
        / 255.0;
    let labels: Vec<i64> = d
        .labels
        .as_ref()
        .expect("labeled")
        .iter()
        .map(|&l| l as i64)
        .collect();
    (
        x.permute([0, 3, 1, 2]).contiguous() - 0.5,
        Tensor::from_slice(&labels),
    )
}

/// ResNet-18 at width 1/8 (8-16-32-64 channels) and a linear map to 32 dimensions.
struct Embedder {
    encoder: ResNet,
    out: nn::Linear,
}

impl Embedder {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.out.forward(&self.encoder.forward_t(x, train)) // [N, 32]
    }
}

fn main() {
    let loss_name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "batch_hard".into());
    if !["batch_hard", "batch_all", "margin"].contains(&loss_name.as_str()) {
        eprintln!("usage: triplet_labels [batch_hard|batch_all|margin]");
        std::process::exit(2);
    }
    tch::manual_seed(0);
    let splits = synthetic::generate(100, 50, 16, 0);
    let (x_train, y_train) = tensors(&splits.train);
    let (x_test, y_test) = tensors(splits.test.as_ref().expect("a test split"));

    let vs = nn::VarStore::new(Device::Cpu);
    let p = vs.root();
    let cfg = ResNetConfig {
        depth: 18,
        stem: Stem::Cifar,
        width: 0.125,
    };
    let encoder = ResNet::new(&(&p / "encoder"), &cfg).expect("valid ResNet");
    let out = nn::linear(&p / "out", encoder.out_dim(), 32, Default::default());
    let net = Embedder { encoder, out };
    let knn = |net: &Embedder| {
        tch::no_grad(|| {
            let (a, b) = (net.forward(&x_train, false), net.forward(&x_test, false));
            knn_accuracy(&a, &y_train, &b, &y_test, 10, 20, 0.1)
        })
    };
    println!(
        "loss {loss_name}: kNN top-1 of the random-init embedding {:.1} %",
        100.0 * knn(&net)
    );

    let mut opt = nn::Adam::default().build(&vs, 1e-3).unwrap();
    let mut rng = Rng::new(0);
    let (batch, steps) = (64i64, 300usize);
    for step in 1..=steps {
        let idx: Vec<i64> = (0..batch)
            .map(|_| rng.below(x_train.size()[0] as usize) as i64)
            .collect();
        let idx = Tensor::from_slice(&idx);
        let (x, y) = (x_train.index_select(0, &idx), y_train.index_select(0, &idx));
        let e = net.forward(&x, true); // [B, 32]
        let e = &e / e.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
        let loss = match loss_name.as_str() {
            // From a random start the hardest triplets of every anchor pull the embeddings
            // together (the loss sits at the margin and nothing is learned): warm up with
            // batch-all for the first third, then mine the hardest, a common curriculum.
            "batch_hard" if step <= steps / 3 => batch_all_triplet(&e, &y, 0.5),
            "batch_hard" => batch_hard_triplet(&e, &y, 0.5),
            "batch_all" => batch_all_triplet(&e, &y, 0.5),
            _ => {
                // row k of the first half with row k of the second: y_pair = 1 if the classes differ
                let h = batch / 2;
                let (a, b) = (e.narrow(0, 0, h), e.narrow(0, h, h));
                margin_contrastive(
                    &a,
                    &b,
                    &y.narrow(0, 0, h).ne_tensor(&y.narrow(0, h, h)),
                    1.0,
                )
            }
        }
        .expect("valid shapes");
        opt.backward_step(&loss);
        if step % 100 == 0 {
            println!("step {step}: loss {:.4}", loss.double_value(&[]));
        }
    }
    println!("after {steps} steps: kNN top-1 {:.1} %", 100.0 * knn(&net));
}
