//! Text for the methods that learn images together with captions (CLIP): a tokenizer trained on
//! the run's captions ([`tokenizer`]) and the text towers that embed token sequences
//! ([`tower`]).

pub mod tokenizer;
pub mod tower;

pub use tokenizer::CaptionTokenizer;
pub use tower::{TextTower, TextTowerKind};
