//! minGPT's causal self-attention: separate key/query/value projections, an output
//! projection `proj`, and the lower-triangular `mask` buffer kept for state_dict parity.

use super::kv_cache::LayerCache;
use super::layers::Linear;
use crate::error::{Error, Result};
use crate::params::{Init, Path, Var};
use tch::Tensor;

pub struct CausalSelfAttention {
    key: Linear,
    query: Linear,
    value: Linear,
    proj: Linear,
    n_head: i64,
}

impl CausalSelfAttention {
    pub fn new(p: &Path, n_embd: i64, n_head: i64, block_size: i64) -> Self {
        let attention = CausalSelfAttention {
            key: Linear::new(&p.sub("key"), n_embd, n_embd, true),
            query: Linear::new(&p.sub("query"), n_embd, n_embd, true),
            value: Linear::new(&p.sub("value"), n_embd, n_embd, true),
            proj: Linear::new(&p.sub("proj"), n_embd, n_embd, true),
            n_head,
        };
        // A persistent buffer in minGPT, so it is part of every state_dict. Attention
        // itself uses libtorch's causal kernel, which applies the same triangle.
        let _mask = p.var(Var {
            name: "mask",
            shape: &[1, 1, block_size, block_size],
            init: Init::LowerTriangular,
            trainable: false,
            buffer: true,
            tied_to: None,
        });
        attention
    }

    fn heads(&self, x: &Tensor) -> Result<Tensor> {
        let size = x.size();
        Ok(
            x.f_view([size[0], size[1], self.n_head, size[2] / self.n_head])?
                .f_transpose(1, 2)?,
        )
    }

    /// x (B, T, C). With a cache, keys/values are written at [cache_start, cache_start+T)
    /// and queries attend to every cached position; that is causal as long as T == 1 or
    /// the cache was empty (prefill), which the caller guarantees.
    pub fn forward(
        &self,
        x: &Tensor,
        attn_pdrop: f64,
        train: bool,
        cache: Option<(&mut LayerCache, i64)>,
    ) -> Result<Tensor> {
        let size = x.size();
        let (b, t, c) = (size[0], size[1], size[2]);
        let q = self.heads(&self.query.forward(x)?)?;
        let k = self.heads(&self.key.forward(x)?)?;
        let v = self.heads(&self.value.forward(x)?)?;
        let dropout = if train { attn_pdrop } else { 0.0 };
        let y = match cache {
            None => Tensor::f_scaled_dot_product_attention(
                &q,
                &k,
                &v,
                None::<Tensor>,
                dropout,
                true,
                None,
                false,
            )?,
            Some((layer, start)) => {
                if t != 1 && start != 0 {
                    return Err(Error::Value(
                        "a cached forward takes one token or starts an empty cache".into(),
                    ));
                }
                let (keys, values) = layer.append(start, &k, &v)?;
                Tensor::f_scaled_dot_product_attention(
                    &q,
                    &keys,
                    &values,
                    None::<Tensor>,
                    dropout,
                    t > 1,
                    None,
                    false,
                )?
            }
        };
        self.proj
            .forward(&y.f_transpose(1, 2)?.f_contiguous()?.f_view([b, t, c])?)
    }
}
