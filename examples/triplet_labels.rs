//! Metric learning with labels: an MLP embedding of the built-in synthetic shapes trained with
//! the triplet loss (batch-hard or batch-all mining over class labels) or the margin
//! contrastive loss (similar / dissimilar pairs from the labels). Prints kNN accuracy on the
//! test split before and after.
//!
//!     cargo run --release --example triplet_labels -- batch_hard
//!     cargo run --release --example triplet_labels -- batch_all
//!     cargo run --release --example triplet_labels -- margin

use selfsup::data::synthetic;
use selfsup::eval::knn_accuracy;
use selfsup::loss::{batch_all_triplet, batch_hard_triplet, margin_contrastive};
use selfsup::rng::Rng;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// Images [N, H, W, 3] u8 → [N, H·W·3] f32 in [0, 1].
fn flat(pixels: &[u8], n: usize) -> Tensor {
    Tensor::from_slice(pixels)
        .to_kind(Kind::Float)
        .view([n as i64, -1])
        / 255.0
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
    let (train, test) = (&splits.train, splits.test.as_ref().expect("a test split"));
    let x_train = flat(&train.images.pixels, train.len()); // [1000, 768]
    let x_test = flat(&test.images.pixels, test.len()); // [500, 768]
    let y_train = Tensor::from_slice(
        &train
            .labels
            .as_ref()
            .unwrap()
            .iter()
            .map(|&l| l as i64)
            .collect::<Vec<_>>(),
    );
    let y_test = Tensor::from_slice(
        &test
            .labels
            .as_ref()
            .unwrap()
            .iter()
            .map(|&l| l as i64)
            .collect::<Vec<_>>(),
    );

    let vs = nn::VarStore::new(Device::Cpu);
    let p = vs.root();
    let net = nn::seq()
        .add(nn::linear(&p / "fc1", 768, 256, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::linear(&p / "fc2", 256, 32, Default::default()));
    let knn = |net: &nn::Sequential| {
        tch::no_grad(|| {
            knn_accuracy(
                &net.forward(&x_train),
                &y_train,
                &net.forward(&x_test),
                &y_test,
                10,
                20,
                0.1,
            )
        })
    };
    println!(
        "loss {loss_name}: kNN top-1 of the random-init embedding {:.1} %",
        100.0 * knn(&net)
    );

    let mut opt = nn::Adam::default().build(&vs, 1e-3).unwrap();
    let mut rng = Rng::new(0);
    let (batch, steps) = (64usize, 400usize);
    for step in 1..=steps {
        let idx: Vec<i64> = (0..batch).map(|_| rng.below(train.len()) as i64).collect();
        let idx = Tensor::from_slice(&idx);
        let (x, y) = (x_train.index_select(0, &idx), y_train.index_select(0, &idx));
        let e = net.forward(&x); // [B, 32]
        let e = &e / e.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
        let loss = match loss_name.as_str() {
            "batch_hard" => batch_hard_triplet(&e, &y, 0.5),
            "batch_all" => batch_all_triplet(&e, &y, 0.5),
            _ => {
                // pair each row with the next one: y_pair = 0 if same class, 1 otherwise
                let (a, b) = (
                    e.narrow(0, 0, batch as i64 / 2),
                    e.narrow(0, batch as i64 / 2, batch as i64 / 2),
                );
                let (ya, yb) = (
                    y.narrow(0, 0, batch as i64 / 2),
                    y.narrow(0, batch as i64 / 2, batch as i64 / 2),
                );
                margin_contrastive(&a, &b, &ya.ne_tensor(&yb), 1.0)
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
