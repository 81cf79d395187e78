//! Heads g(·) on top of the encoder: small MLPs described as data.

pub mod mlp;

pub use mlp::{Block, Mlp};
