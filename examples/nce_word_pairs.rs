//! NCE on word pairs (Mnih & Teh 2012; word2vec's negative sampling is its k·p_n = 1 special
//! case): (centre word, context word) pairs from a small text, a score s(w, c) = e_w · f_c,
//! and k noise contexts per pair from the unigram^0.75 distribution. Words used in the same
//! contexts should end up with similar embeddings.
//!
//!     cargo run --release --example nce_word_pairs
//!
//! The text is generated from templates so that the word groups (animals, vehicles, foods,
//! places) are known: the example reports, for every group word, whether its nearest
//! neighbour by cosine is in its own group, before and after training.

use selfsup::loss::nce::{nce, unigram_log_noise};
use selfsup::rng::Rng;
use std::collections::HashMap;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

const GROUPS: &[(&str, &[&str])] = &[
    (
        "animal",
        &["cat", "dog", "horse", "goat", "rabbit", "sheep"],
    ),
    ("vehicle", &["car", "bus", "truck", "tram", "van", "taxi"]),
    (
        "food",
        &["bread", "apple", "cheese", "rice", "soup", "cake"],
    ),
    (
        "place",
        &["city", "village", "market", "harbour", "station", "farm"],
    ),
];

/// Sentences like "the dog eats the apple in the village" / "the bus drives to the station".
fn text(sentences: usize, rng: &mut Rng) -> Vec<String> {
    let pick = |g: usize, rng: &mut Rng| GROUPS[g].1[rng.below(GROUPS[g].1.len())].to_string();
    let mut words = Vec::new();
    for _ in 0..sentences {
        let s = match rng.below(3) {
            0 => format!(
                "the {} eats the {} in the {}",
                pick(0, rng),
                pick(2, rng),
                pick(3, rng)
            ),
            1 => format!("the {} drives slowly to the {}", pick(1, rng), pick(3, rng)),
            _ => format!(
                "a hungry {} sleeps near the parked {}",
                pick(0, rng),
                pick(1, rng)
            ),
        };
        words.extend(s.split(' ').map(String::from));
        words.push(".".into());
    }
    words
}

fn group_of(word: &str) -> Option<usize> {
    GROUPS.iter().position(|(_, ws)| ws.contains(&word))
}

/// Fraction of group words whose nearest other word (cosine of centre embeddings) shares its group.
fn neighbour_purity(emb: &Tensor, vocab: &[String]) -> f64 {
    let e = emb.detach();
    let u = &e / e.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
    let sim =
        u.matmul(&u.tr()) - Tensor::eye(vocab.len() as i64, (Kind::Float, Device::Cpu)) * 10.0;
    let nearest = sim.argmax(1, false);
    let (mut hits, mut total) = (0, 0);
    for (i, w) in vocab.iter().enumerate() {
        if let Some(g) = group_of(w) {
            total += 1;
            let j = nearest.int64_value(&[i as i64]) as usize;
            hits += (group_of(&vocab[j]) == Some(g)) as usize;
        }
    }
    hits as f64 / total as f64
}

fn main() {
    tch::manual_seed(0);
    let mut rng = Rng::new(0);
    let words = text(3000, &mut rng);
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut vocab: Vec<String> = Vec::new();
    let mut counts: Vec<u64> = Vec::new();
    let ids: Vec<usize> = words
        .iter()
        .map(|w| {
            let id = *index.entry(w.as_str()).or_insert_with(|| {
                vocab.push(w.clone());
                counts.push(0);
                vocab.len() - 1
            });
            counts[id] += 1;
            id
        })
        .collect();
    // (centre, context) pairs within a window of 2
    let mut pairs: Vec<(i64, i64)> = Vec::new();
    for i in 0..ids.len() {
        for j in i.saturating_sub(2)..(i + 3).min(ids.len()) {
            if j != i {
                pairs.push((ids[i] as i64, ids[j] as i64));
            }
        }
    }
    let v = vocab.len() as i64;
    let log_pn = unigram_log_noise(&counts, 0.75).to_kind(Kind::Float); // [V]
    let noise_probs = log_pn.exp();
    println!(
        "{} words, vocabulary {v}, {} (centre, context) pairs",
        words.len(),
        pairs.len()
    );

    let vs = nn::VarStore::new(Device::Cpu);
    let p = vs.root();
    let centre = p.randn("centre", &[v, 32], 0.0, 0.1); // e_w
    let context = p.randn("context", &[v, 32], 0.0, 0.1); // f_c
    println!(
        "nearest-neighbour group purity before: {:.0} %",
        100.0 * neighbour_purity(&centre, &vocab)
    );
    let mut opt = nn::Adam::default().build(&vs, 0.02).unwrap();
    let (batch, k) = (512usize, 5i64);
    for epoch in 1..=5 {
        let order = rng.permutation(pairs.len());
        let mut total = 0.0;
        let chunks: Vec<&[usize]> = order.chunks(batch).collect();
        for chunk in &chunks {
            let w = Tensor::from_slice(&chunk.iter().map(|&i| pairs[i].0).collect::<Vec<_>>()); // [B]
            let c = Tensor::from_slice(&chunk.iter().map(|&i| pairs[i].1).collect::<Vec<_>>()); // [B]
            let b = chunk.len() as i64;
            let noise = noise_probs.multinomial(b * k, true).view([b, k]); // [B, k]
            let e = centre.index_select(0, &w); // [B, 32]
            let data_scores = (&e * context.index_select(0, &c)).sum_dim_intlist(
                [1i64].as_slice(),
                false,
                Kind::Float,
            ); // [B]
            let noise_ctx = context.index_select(0, &noise.view(-1)).view([b, k, 32]); // [B, k, 32]
            let noise_scores = noise_ctx.bmm(&e.unsqueeze(2)).squeeze_dim(2); // [B, k]
            let loss = nce(
                &data_scores,
                &log_pn.index_select(0, &c),
                &noise_scores,
                &log_pn.index_select(0, &noise.view(-1)).view([b, k]),
            )
            .expect("valid shapes");
            opt.backward_step(&loss);
            total += loss.double_value(&[]);
        }
        println!(
            "epoch {epoch}: NCE loss {:.4} (chance: (k+1)·ln 2 = {:.4})",
            total / chunks.len() as f64,
            (k + 1) as f64 * 2f64.ln()
        );
    }
    println!(
        "nearest-neighbour group purity after: {:.0} %",
        100.0 * neighbour_purity(&centre, &vocab)
    );
    for w in ["cat", "bus", "apple", "market"] {
        let i = vocab.iter().position(|x| x == w).unwrap() as i64;
        let e = centre.detach();
        let u = &e / e.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
        let sim = u.matmul(&u.get(i)); // [V]
        let (_, top) = sim.topk(4, 0, true, true);
        let near: Vec<&str> = (1..4)
            .map(|r| vocab[top.int64_value(&[r]) as usize].as_str())
            .collect();
        println!("  {w}: {}", near.join(", "));
    }
}
