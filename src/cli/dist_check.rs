//! `selfsup dist-check`: data-parallel losses and gradients against one process.

use clap::Args;

#[derive(Args)]
pub struct DistCheckArgs {
    /// Image pairs of the global batch (a multiple of the ranks).
    #[arg(long, default_value_t = 16)]
    pub images: i64,
    /// Largest difference accepted (loss, every gradient element, the queue).
    #[arg(long, default_value_t = 1e-5)]
    pub tolerance: f64,
}

pub fn dist_check(a: &DistCheckArgs) -> anyhow::Result<()> {
    let ranks = selfsup::dist::size();
    let rows = selfsup::train::dist_check::run(a.images)?;
    let mut worst = 0f64;
    for r in &rows {
        worst = worst.max(r.loss_diff).max(r.grad_diff).max(r.state_diff);
        if selfsup::dist::is_root() {
            println!(
                "{:<15} {ranks} ranks x {} vs 1 process x {}: loss {:.6} (diff {:.1e}), max |grad diff| {:.1e} \
                 (max |grad| {:.1e}), queue diff {:.1e}",
                r.loss,
                a.images / ranks as i64,
                a.images,
                r.value,
                r.loss_diff,
                r.grad_diff,
                r.grad_max,
                r.state_diff
            );
        }
    }
    anyhow::ensure!(
        worst <= a.tolerance,
        "the {ranks} ranks differ from one process by {worst:.2e}, more than --tolerance {:.0e}",
        a.tolerance
    );
    if selfsup::dist::is_root() {
        println!(
            "ok: {ranks} ranks agree with one process to {worst:.1e} (tolerance {:.0e})",
            a.tolerance
        );
    }
    Ok(())
}
