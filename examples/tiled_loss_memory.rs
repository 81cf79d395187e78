//! Peak memory and time of NT-Xent forward + backward, plain vs tiled, at 2K embeddings of D dims.
//!
//!     cargo run --release --example tiled_loss_memory -- tiled 65536 128
//!     cargo run --release --example tiled_loss_memory -- plain 8192 128
//!
//! Run one form per process: peak RSS (Linux VmHWM) is per process. "extra" is the peak minus
//! the resident memory just before the loss (inputs already allocated).

use selfsup::loss::{nt_xent, nt_xent_tiled};
use selfsup::train::bench::{peak_rss_mib, status_mib};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: tiled_loss_memory <plain|tiled> <2K embeddings, even> <D> [tile rows, 0 = auto]";
    if args.len() < 3 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let mode = args[0].as_str();
    let (n, d): (i64, i64) = match (args[1].parse(), args[2].parse()) {
        (Ok(n), Ok(d)) if n >= 2 && n % 2 == 0 && d >= 1 => (n, d),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let tile_rows: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
    tch::manual_seed(0);
    let z = Tensor::randn([n, d], (Kind::Float, Device::Cpu)).set_requires_grad(true); // [2K, D]
    let (a, b) = (z.narrow(0, 0, n / 2), z.narrow(0, n / 2, n / 2));
    let before = status_mib("VmRSS").unwrap_or(f64::NAN);
    let t = Instant::now();
    let loss = match mode {
        "plain" => nt_xent(&a, &b, 0.5),
        "tiled" => nt_xent_tiled(&a, &b, 0.5, tile_rows),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
    .expect("valid shapes");
    loss.backward();
    let grad_norm = z.grad().norm().double_value(&[]);
    let secs = t.elapsed().as_secs_f64();
    let peak = peak_rss_mib().unwrap_or(f64::NAN);
    println!(
        "{mode} 2K={n} D={d}: loss {:.6} |grad| {grad_norm:.6e} forward+backward {secs:.2} s, \
         peak RSS {peak:.0} MiB, extra over the inputs {:.0} MiB",
        loss.double_value(&[]),
        peak - before
    );
}
