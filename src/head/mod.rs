//! Heads g(·) on top of the encoder: small MLPs described as data, and DINO's head.

pub mod dino_head;
pub mod mlp;

pub use dino_head::DinoHead;
pub use mlp::{Block, Mlp};
