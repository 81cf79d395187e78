//! Heads g(·) on top of the encoder: small MLPs described as data, DINO's head, and the
//! classifier of the pretext tasks, and the decoders to pixels of the self-prediction methods.

pub mod decoder;
pub mod dino_head;
pub mod mlp;
pub mod norm;
pub mod pretext;

pub use decoder::Decoder;
pub use dino_head::DinoHead;
pub use mlp::{Block, Mlp};
pub use norm::HeadNorm;
pub use pretext::PretextHead;
