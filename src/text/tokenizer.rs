//! The captions' tokenizer: Hugging Face `tokenizers`' byte-pair encoding (Sennrich et al. 2016)
//! with a vocabulary trained on the run's own captions (CLIP's is a lower-cased BPE too). Text is
//! NFKC-normalised and lower-cased; each space becomes `▁` starting the next word
//! (SentencePiece's metaspace, so that decoding puts the spaces back) and each word is cut into
//! the merges learnt. Saved as a `tokenizer.json` that Python's `tokenizers` reads too.
//!
//! The same captions always give the same vocabulary and ids (ranks of a data-parallel job and
//! reruns of a seed must agree): the trainer's initial tokens are the characters, numbered in
//! sorted order, and ties between equally frequent pairs go to the lower pair of ids. A
//! word-end suffix (`</w>`) would break that: the trainer numbers the suffixed characters in its
//! hash map's (random) order.
//!
//! Ids: 0 is padding `[PAD]`, 1 the unknown piece `[UNK]`; a caption becomes a row of
//! [`CaptionTokenizer::context_length`] ids, cut at that length, padded with 0.

use anyhow::Context;
use tch::Tensor;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::{Lowercase, Sequence, NFKC};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::{AddedToken, Tokenizer};

/// The padding id: rows are filled with it after a caption's last token.
pub const PAD: i64 = 0;
const PAD_TOKEN: &str = "[PAD]";
const UNK_TOKEN: &str = "[UNK]";
/// What a space becomes: the first piece of each word starts with it.
const METASPACE: char = '▁';

/// A trained tokenizer and the length of its rows.
pub struct CaptionTokenizer {
    inner: Tokenizer,
    context_length: usize,
}

impl std::fmt::Debug for CaptionTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CaptionTokenizer({} tokens, {} per caption)",
            self.vocab_size(),
            self.context_length
        )
    }
}

impl CaptionTokenizer {
    /// Learns at most `vocab_size` tokens (the two special ones, the characters, then merges,
    /// most frequent first) from `captions`.
    pub fn train(
        captions: &[String],
        vocab_size: usize,
        context_length: usize,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !captions.is_empty(),
            "no captions to learn a vocabulary from"
        );
        let model = BPE::builder()
            .unk_token(UNK_TOKEN.into())
            .build()
            .map_err(|e| anyhow::anyhow!("BPE model: {e}"))?;
        let mut inner = Tokenizer::new(model);
        let metaspace = Metaspace::new(METASPACE, PrependScheme::Always, true);
        inner
            .with_normalizer(Some(Sequence::new(vec![NFKC.into(), Lowercase.into()])))
            .with_pre_tokenizer(Some(metaspace.clone()))
            .with_decoder(Some(metaspace));
        let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
            .show_progress(false)
            .vocab_size(vocab_size)
            .min_frequency(0)
            .special_tokens(vec![
                AddedToken::from(PAD_TOKEN, true),
                AddedToken::from(UNK_TOKEN, true),
            ])
            .build()
            .into();
        inner
            .train(&mut trainer, captions.iter())
            .map_err(|e| anyhow::anyhow!("learning the captions' vocabulary: {e}"))?;
        anyhow::ensure!(
            inner.token_to_id(PAD_TOKEN) == Some(PAD as u32),
            "the padding token is not id 0"
        );
        Ok(CaptionTokenizer {
            inner,
            context_length,
        })
    }

    /// The tokenizer saved by [`to_json`](Self::to_json).
    pub fn from_json(json: &str, context_length: usize) -> anyhow::Result<Self> {
        let inner: Tokenizer = json
            .parse()
            .map_err(|e| anyhow::anyhow!("not a tokenizers tokenizer.json: {e}"))?;
        anyhow::ensure!(
            inner.token_to_id(PAD_TOKEN) == Some(PAD as u32),
            "its id 0 is not {PAD_TOKEN}: it was not written by selfsup"
        );
        Ok(CaptionTokenizer {
            inner,
            context_length,
        })
    }

    /// The tokenizer as `tokenizer.json` text.
    pub fn to_json(&self) -> anyhow::Result<String> {
        self.inner
            .to_string(true)
            .map_err(|e| anyhow::anyhow!("writing the tokenizer: {e}"))
    }

    /// Ids in use: the special tokens, the characters and the merges.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Ids per row.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The ids of one text, at most `context_length` of them.
    pub fn ids(&self, text: &str) -> anyhow::Result<Vec<i64>> {
        let e = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("tokenizing {text:?}: {e}"))?;
        Ok(e.get_ids()
            .iter()
            .take(self.context_length)
            .map(|&i| i as i64)
            .collect())
    }

    /// The text of `ids` (padding left out).
    pub fn decode(&self, ids: &[i64]) -> anyhow::Result<String> {
        let ids: Vec<u32> = ids
            .iter()
            .filter(|&&i| i != PAD)
            .map(|&i| i as u32)
            .collect();
        self.inner
            .decode(&ids, false)
            .map_err(|e| anyhow::anyhow!("decoding ids: {e}"))
    }

    /// Rows of ids: [N, context_length] int64, each text's ids then [`PAD`]s. A text with no
    /// token (empty) is one `[UNK]`, so that no row is all padding.
    pub fn batch(&self, texts: &[String]) -> anyhow::Result<Tensor> {
        let l = self.context_length;
        let mut flat = vec![PAD; texts.len() * l];
        let unk = self
            .inner
            .token_to_id(UNK_TOKEN)
            .context("no [UNK] token")? as i64;
        for (row, text) in flat.chunks_mut(l).zip(texts) {
            let ids = self.ids(text)?;
            match ids.is_empty() {
                true => row[0] = unk,
                false => row[..ids.len()].copy_from_slice(&ids),
            }
        }
        Ok(Tensor::from_slice(&flat).view([texts.len() as i64, l as i64]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captions() -> Vec<String> {
        [
            "a small red circle on the left",
            "a large blue square at the top",
            "there is a small green triangle in the middle",
            "a large red square on the right",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    #[test]
    fn round_trips_through_ids_and_json() {
        let t = CaptionTokenizer::train(&captions(), 200, 16).unwrap();
        for c in captions() {
            let ids = t.ids(&c).unwrap();
            assert!(ids.iter().all(|&i| i != PAD), "{ids:?}");
            assert_eq!(t.decode(&ids).unwrap(), c);
        }
        // normalised: case folded; words of the captions are whole tokens
        let ids = t.ids("A Small RED circle").unwrap();
        assert_eq!(t.decode(&ids).unwrap(), "a small red circle");
        assert_eq!(ids.len(), 4, "{ids:?}");
        // a word never seen is spelt from its characters, or [UNK] for unseen characters
        assert_eq!(t.decode(&t.ids("circles").unwrap()).unwrap(), "circles");
        let back = CaptionTokenizer::from_json(&t.to_json().unwrap(), 16).unwrap();
        assert_eq!(back.vocab_size(), t.vocab_size());
        for c in captions() {
            assert_eq!(back.ids(&c).unwrap(), t.ids(&c).unwrap());
        }
        assert!(CaptionTokenizer::from_json("{}", 16).is_err());
    }

    #[test]
    fn the_same_captions_give_the_same_vocabulary() {
        // the trainer's hash maps iterate in a random order per map: train several times
        let json = CaptionTokenizer::train(&captions(), 60, 16)
            .unwrap()
            .to_json()
            .unwrap();
        for _ in 0..5 {
            let again = CaptionTokenizer::train(&captions(), 60, 16).unwrap();
            assert_eq!(again.to_json().unwrap(), json);
        }
    }

    #[test]
    fn rows_are_cut_and_padded() {
        let t = CaptionTokenizer::train(&captions(), 200, 4).unwrap();
        let b = t
            .batch(&[
                "a small red circle on the left".into(),
                "".into(),
                "red".into(),
            ])
            .unwrap();
        assert_eq!(b.size(), vec![3, 4]);
        let rows: Vec<Vec<i64>> = Vec::<Vec<i64>>::try_from(&b).unwrap();
        assert!(rows[0].iter().all(|&i| i != PAD), "{rows:?}");
        assert_eq!(t.decode(&rows[0]).unwrap(), "a small red circle");
        assert_eq!(rows[1][0], t.inner.token_to_id(UNK_TOKEN).unwrap() as i64);
        assert_eq!(&rows[2][1..], &[PAD; 3]);
    }
}
