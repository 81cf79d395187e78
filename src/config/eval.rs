//! `[eval]`: how encoders are judged (read by [`crate::eval`]).

/// `[eval]`: how encoders are judged.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Neighbours of the weighted kNN classifier. Default 200 (InstDisc, lightly).
    pub knn_k: usize,
    /// Temperature of the kNN vote weights exp(cos/t). Default 0.1.
    pub knn_t: f64,
    /// Epochs of the linear probe (logistic regression on frozen features). Default 30.
    pub linear_epochs: usize,
    /// Learning rate of the linear probe (Adam, cosine decay). Default 1e-2.
    pub linear_lr: f64,
    /// Images per forward pass when extracting features. Default 512.
    pub batch_size: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            knn_k: 200,
            knn_t: 0.1,
            linear_epochs: 30,
            linear_lr: 1e-2,
            batch_size: 512,
        }
    }
}
