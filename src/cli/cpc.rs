//! `selfsup cpc`: CPC on generated 1-D signals against its baselines.

use clap::Args;

#[derive(Args)]
pub struct CpcArgs {
    /// Adam steps of each objective (batch 64 sequences).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub steps: u64,
    /// Seeds (signal sets and initialisations 0..SEEDS), for the spread.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub seeds: u64,
}

/// Runs the comparison and prints its table.
pub fn cpc(a: &CpcArgs) -> anyhow::Result<()> {
    let steps = a.steps as usize;
    selfsup::sequence::experiment::compare(steps, a.seeds, &mut |l| eprintln!("{l}"))
        .map(|r| print!("{}", selfsup::sequence::experiment::table(&r, steps)))
}
