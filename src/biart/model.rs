//! BiART: minGPT (2021 tree: `tok_emb`, `pos_emb`, `blocks.N`, `ln_f`, `head`) plus the
//! L-Verse segment embedding `seg_emb` (REF = 0, GEN = 1).

use super::attention::CausalSelfAttention;
use super::config::BiartConfig;
use super::kv_cache::KvCache;
use super::layers::{LayerNorm, Linear, LinearKernel};
use crate::error::{Error, Result};
use crate::params::{common_kind, Init, ParamSpec, ParamTree, Path, TensorMap};
use tch::{Device, Kind, Tensor};

struct Block {
    ln1: LayerNorm,
    attn: CausalSelfAttention,
    ln2: LayerNorm,
    mlp_in: Linear,
    mlp_out: Linear,
}

impl Block {
    fn new(p: &Path, c: &BiartConfig) -> Self {
        let mlp = p.sub("mlp");
        Block {
            ln1: LayerNorm::new(&p.sub("ln1"), c.n_embd),
            attn: CausalSelfAttention::new(&p.sub("attn"), c.n_embd, c.n_head, c.block_size),
            ln2: LayerNorm::new(&p.sub("ln2"), c.n_embd),
            // minGPT's mlp is Sequential(Linear, GELU, Linear, Dropout): indices 0 and 2.
            mlp_in: Linear::new(&mlp.sub(0), c.n_embd, 4 * c.n_embd, true),
            mlp_out: Linear::new(&mlp.sub(2), 4 * c.n_embd, c.n_embd, true),
        }
    }

    fn forward(
        &self,
        x: &Tensor,
        c: &BiartConfig,
        train: bool,
        cache: Option<(&mut super::kv_cache::LayerCache, i64)>,
        kernel: LinearKernel,
    ) -> Result<Tensor> {
        let attended =
            self.attn
                .forward(&self.ln1.forward(x)?, c.attn_pdrop, train, cache, kernel)?;
        let x = x.f_add(&attended.f_dropout(c.resid_pdrop, train)?)?;
        let hidden = self
            .mlp_in
            .forward_with(&self.ln2.forward(&x)?, kernel)?
            .f_gelu("none")?;
        let out = self
            .mlp_out
            .forward_with(&hidden, kernel)?
            .f_dropout(c.resid_pdrop, train)?;
        Ok(x.f_add(&out)?)
    }
}

pub struct Biart {
    config: BiartConfig,
    pos_emb: Tensor,
    tok_emb: Tensor,
    seg_emb: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    head: Linear,
    kind: Kind,
    /// The linears' kernel in `forward_cached` (chosen by `prepare_decoding`).
    decode_kernel: LinearKernel,
}

impl Biart {
    fn build(p: &Path, c: &BiartConfig) -> Self {
        Biart {
            config: c.clone(),
            pos_emb: p.param("pos_emb", &[1, c.block_size, c.n_embd], Init::Normal(0.02)),
            tok_emb: p.sub("tok_emb").param(
                "weight",
                &[c.vocab_size, c.n_embd],
                Init::Normal(0.02),
            ),
            seg_emb: p
                .sub("seg_emb")
                .param("weight", &[2, c.n_embd], Init::Normal(0.02)),
            blocks: (0..c.n_layer)
                .map(|i| Block::new(&p.sub("blocks").sub(i), c))
                .collect(),
            ln_f: LayerNorm::new(&p.sub("ln_f"), c.n_embd),
            head: Linear::new(&p.sub("head"), c.n_embd, c.vocab_size, false),
            kind: Kind::Float,
            decode_kernel: LinearKernel::Aten,
        }
    }

    pub fn param_specs(config: &BiartConfig) -> Result<Vec<ParamSpec>> {
        config.validate()?;
        let tree = ParamTree::collect();
        Self::build(&tree.root(), config);
        Ok(tree.into_specs())
    }

    pub fn from_tensors(config: &BiartConfig, tensors: &TensorMap) -> Result<Self> {
        config.validate()?;
        let tree = ParamTree::load(tensors);
        let mut model = Self::build(&tree.root(), config);
        tree.finish("BiART weights do not fit the configuration")?;
        model.kind = common_kind(tensors)?;
        Ok(model)
    }

    pub fn config(&self) -> &BiartConfig {
        &self.config
    }

    pub fn device(&self) -> Device {
        self.tok_emb.device()
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Checks token and segment ids: int64 (B, T) on the model's device, tokens in
    /// [0, vocab), segments in {0, 1}, `offset + T` within the block size.
    pub fn check_ids(&self, idx: &Tensor, seg: &Tensor, offset: i64) -> Result<()> {
        let size = idx.size();
        if size.len() != 2 {
            return Err(Error::Shape(format!(
                "expected token ids of shape (B, T), got {size:?}"
            )));
        }
        if seg.size() != size {
            return Err(Error::Shape(format!(
                "segment ids must have the token ids' shape {size:?}, got {:?}",
                seg.size()
            )));
        }
        for (what, t) in [("token", idx), ("segment", seg)] {
            if t.kind() != Kind::Int64 {
                return Err(Error::Kind(format!(
                    "expected int64 {what} ids, got {:?}",
                    t.kind()
                )));
            }
            if t.device() != self.device() {
                return Err(Error::Kind(format!(
                    "{what} ids are on {:?} but the model is on {:?}",
                    t.device(),
                    self.device()
                )));
            }
        }
        if offset + size[1] > self.config.block_size {
            return Err(Error::Value(format!(
                "sequence of {} tokens exceeds the block size {}",
                offset + size[1],
                self.config.block_size
            )));
        }
        if idx.numel() > 0 {
            let _guard = tch::no_grad_guard();
            let (low, high) = (idx.f_min()?.int64_value(&[]), idx.f_max()?.int64_value(&[]));
            if low < 0 || high >= self.config.vocab_size {
                let bad = if low < 0 { low } else { high };
                return Err(Error::Value(format!(
                    "token id {bad} is outside the vocabulary [0, {})",
                    self.config.vocab_size
                )));
            }
            let (low, high) = (seg.f_min()?.int64_value(&[]), seg.f_max()?.int64_value(&[]));
            if low < 0 || high > 1 {
                let bad = if low < 0 { low } else { high };
                return Err(Error::Value(format!(
                    "segment id {bad} is not 0 (REF) or 1 (GEN)"
                )));
            }
        }
        Ok(())
    }

    /// tok + seg + pos (in that order, SPEC §6.8) for positions [offset, offset + T).
    fn embed(&self, idx: &Tensor, seg: &Tensor, offset: i64, train: bool) -> Result<Tensor> {
        let t = idx.size()[1];
        let tok = Tensor::f_embedding(&self.tok_emb, idx, -1, false, false)?;
        let segment = Tensor::f_embedding(&self.seg_emb, seg, -1, false, false)?;
        let pos = self.pos_emb.f_narrow(1, offset, t)?;
        Ok(tok
            .f_add(&segment)?
            .f_add(&pos)?
            .f_dropout(self.config.embd_pdrop, train)?)
    }

    /// Logits (B, T, V) for a whole sequence, with autograd (the training path).
    pub fn forward(&self, idx: &Tensor, seg: &Tensor, train: bool) -> Result<Tensor> {
        self.check_ids(idx, seg, 0)?;
        let mut x = self.embed(idx, seg, 0, train)?;
        for block in &self.blocks {
            x = block.forward(&x, &self.config, train, None, LinearKernel::Aten)?;
        }
        self.head.forward(&self.ln_f.forward(&x)?)
    }

    /// Readies the cached decoding path: stacked query/key/value weights per block and
    /// the fastest linear kernel for the model's device and precision.
    pub fn prepare_decoding(&mut self) -> Result<()> {
        for block in &mut self.blocks {
            block.attn.fuse_projections()?;
        }
        self.decode_kernel = LinearKernel::for_inference(self.device(), self.kind);
        Ok(())
    }

    pub fn new_cache(&self, batch: i64) -> Result<KvCache> {
        let c = &self.config;
        KvCache::new(
            c.n_layer,
            batch,
            c.n_head,
            c.block_size,
            c.head_dim(),
            self.kind,
            self.device(),
        )
    }

    /// Inference forward over new tokens that continue what `cache` holds; returns the
    /// logits of the last position only (B, V).
    pub fn forward_cached(
        &self,
        idx: &Tensor,
        seg: &Tensor,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let t = idx.size()[1];
        cache.check_room(t)?;
        let start = cache.len;
        let mut x = self.embed(idx, seg, start, false)?;
        for (block, layer) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            x = block.forward(
                &x,
                &self.config,
                false,
                Some((layer, start)),
                self.decode_kernel,
            )?;
        }
        cache.len += t;
        let last = x.f_narrow(1, t - 1, 1)?.f_squeeze_dim(1)?;
        self.head
            .forward_with(&self.ln_f.forward(&last)?, self.decode_kernel)
    }
}
