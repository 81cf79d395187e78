//! CPC on generated signals: does the context learn the hidden class of a sequence? The same
//! experiment as `selfsup cpc` ([`selfsup::sequence::experiment`]).
//!
//! ```text
//! cargo run --release --example cpc_signals [-- STEPS [SEEDS]]
//! ```
//! STEPS Adam steps per objective (default 600), SEEDS runs (default 3) for the spread.

use selfsup::sequence::experiment;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps: usize = args.first().map_or(Ok(600), |s| s.parse())?;
    let seeds: u64 = args.get(1).map_or(Ok(3), |s| s.parse())?;
    let results = experiment::compare(steps, seeds, &mut |line| eprintln!("{line}"))?;
    print!("{}", experiment::table(&results, steps));
    Ok(())
}
