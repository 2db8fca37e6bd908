//! BiART's hyper-parameters: minGPT's GPTConfig (SPEC §4) plus nothing else; the token
//! layout lives with the tokenizer/checkpoint on the Python side.

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct BiartConfig {
    pub vocab_size: i64,
    pub block_size: i64,
    pub n_layer: i64,
    pub n_head: i64,
    pub n_embd: i64,
    pub embd_pdrop: f64,
    pub resid_pdrop: f64,
    pub attn_pdrop: f64,
}

impl BiartConfig {
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("vocab_size", self.vocab_size),
            ("block_size", self.block_size),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_embd", self.n_embd),
        ] {
            if value < 1 {
                return Err(Error::Value(format!("{name} must be >= 1, got {value}")));
            }
        }
        if self.n_embd % self.n_head != 0 {
            return Err(Error::Value(format!(
                "n_embd ({}) must be divisible by n_head ({})",
                self.n_embd, self.n_head
            )));
        }
        for (name, p) in [
            ("embd_pdrop", self.embd_pdrop),
            ("resid_pdrop", self.resid_pdrop),
            ("attn_pdrop", self.attn_pdrop),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::Value(format!("{name} must be in [0, 1), got {p}")));
            }
        }
        Ok(())
    }

    pub fn head_dim(&self) -> i64 {
        self.n_embd / self.n_head
    }
}
