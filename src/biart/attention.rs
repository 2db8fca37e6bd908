//! minGPT's causal self-attention: separate key/query/value projections, an output
//! projection `proj`, and the lower-triangular `mask` buffer kept for state_dict parity.

use super::kv_cache::LayerCache;
use super::layers::{Linear, LinearKernel};
use crate::error::{Error, Result};
use crate::params::{Init, Path, Var};
use tch::Tensor;

pub struct CausalSelfAttention {
    key: Linear,
    query: Linear,
    value: Linear,
    proj: Linear,
    n_head: i64,
    /// Query, key and value projections stacked into one (3C, C) matrix for decoding,
    /// built once per generation by `fuse_projections` (one GEMM instead of three).
    fused: Option<Linear>,
}

impl CausalSelfAttention {
    pub fn new(p: &Path, n_embd: i64, n_head: i64, block_size: i64) -> Self {
        let attention = CausalSelfAttention {
            key: Linear::new(&p.sub("key"), n_embd, n_embd, true),
            query: Linear::new(&p.sub("query"), n_embd, n_embd, true),
            value: Linear::new(&p.sub("value"), n_embd, n_embd, true),
            proj: Linear::new(&p.sub("proj"), n_embd, n_embd, true),
            n_head,
            fused: None,
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

    /// Stacks the query/key/value weights for the cached decoding path (a copy of 3C²
    /// values; the parameters themselves are untouched).
    pub fn fuse_projections(&mut self) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let weight = Tensor::f_cat(
            &[&self.query.weight, &self.key.weight, &self.value.weight],
            0,
        )?;
        let biases: Option<Vec<&Tensor>> = [&self.query.bias, &self.key.bias, &self.value.bias]
            .iter()
            .map(|b| b.as_ref())
            .collect();
        let bias = biases.map(|b| Tensor::f_cat(&b, 0)).transpose()?;
        self.fused = Some(Linear { weight, bias });
        Ok(())
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
        kernel: LinearKernel,
    ) -> Result<Tensor> {
        let size = x.size();
        let (b, t, c) = (size[0], size[1], size[2]);
        let (q, k, v) = match &self.fused {
            Some(fused) => {
                let qkv = fused.forward_with(x, kernel)?;
                (
                    qkv.f_narrow(2, 0, c)?,
                    qkv.f_narrow(2, c, c)?,
                    qkv.f_narrow(2, 2 * c, c)?,
                )
            }
            None => (
                self.query.forward_with(x, kernel)?,
                self.key.forward_with(x, kernel)?,
                self.value.forward_with(x, kernel)?,
            ),
        };
        let (q, k, v) = (self.heads(&q)?, self.heads(&k)?, self.heads(&v)?);
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
                if t == 1 {
                    single_query_attention(&q, &keys, &values)?
                } else {
                    Tensor::f_scaled_dot_product_attention(
                        &q,
                        &keys,
                        &values,
                        None::<Tensor>,
                        dropout,
                        true,
                        None,
                        false,
                    )?
                }
            }
        };
        self.proj.forward_with(
            &y.f_transpose(1, 2)?.f_contiguous()?.f_view([b, t, c])?,
            kernel,
        )
    }
}

/// One new query per sequence against every cached position (no mask needed: all of them
/// precede it). Two batched matmuls and a softmax; libtorch's fused CPU attention kernel
/// is about twice slower for a single query over a few hundred keys.
fn single_query_attention(q: &Tensor, keys: &Tensor, values: &Tensor) -> Result<Tensor> {
    let scale = (q.size()[3] as f64).powf(-0.5);
    let scores = q
        .f_matmul(&keys.f_transpose(-2, -1)?)?
        .f_mul_scalar(scale)?;
    Ok(scores.f_softmax(-1, scores.kind())?.f_matmul(values)?)
}
