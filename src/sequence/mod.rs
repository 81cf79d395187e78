//! Self-supervision on sequences rather than images: Contrastive Predictive Coding (CPC, van den
//! Oord et al. 2018) on 1-D signals, next to the plain autoregressive next-value predictor, and
//! a generated signal set whose hidden class a linear probe must recover
//! ([`experiment`]: `selfsup cpc`, `examples/cpc_signals.rs`).

pub mod cpc;
pub mod experiment;
pub mod signals;
