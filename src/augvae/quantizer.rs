//! The EMA vector quantizer's tensors (a codebook shared by all levels, SPEC §2.4) and
//! its inference half: nearest ids and code lookup. The training half (straight-through,
//! commitment, EMA update) is PyTorch's, in `lverse/quantizer.py`.

use crate::error::Result;
use crate::params::{Init, Path, Var};
use crate::vq;
use tch::Tensor;

pub struct EmaQuantizer {
    weight: Tensor,
}

impl EmaQuantizer {
    /// `tie_to` names the level-0 quantizer whose tensors this one shares.
    pub fn new(p: &Path, num_tokens: i64, dim: i64, tie_to: Option<&Path>) -> Self {
        let e = p.sub("embedding");
        let tied = |name: &str| tie_to.map(|t| t.sub("embedding").full_name(name));
        let var = |name: &'static str, shape: &[i64], init: Init| {
            e.var(Var {
                name,
                shape,
                init,
                trainable: false,
                buffer: false,
                tied_to: tied(name),
            })
        };
        let weight = var("weight", &[num_tokens, dim], Init::Normal(1.0));
        // The EMA statistics are part of the official tree; only training reads them.
        let _cluster_size = var("cluster_size", &[num_tokens], Init::Zeros);
        let _embed_avg = var(
            "embed_avg",
            &[num_tokens, dim],
            Init::CopyOf(e.full_name("weight")),
        );
        EmaQuantizer { weight }
    }

    pub fn codebook(&self) -> &Tensor {
        &self.weight
    }

    /// Ids of the nearest codes for a (B, D, H, W) feature map, without gradients.
    pub fn nearest_ids(&self, z: &Tensor) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let size = z.size();
        let flat = z.f_permute([0, 2, 3, 1])?.f_reshape([-1, size[1]])?;
        let (ids, _) = vq::nearest(&flat, &self.weight)?;
        Ok(ids.f_reshape([size[0], size[2] * size[3]])?)
    }

    /// Codebook rows for ids (B, H*W) as a (B, D, H, W) map.
    pub fn lookup(&self, ids: &Tensor, h: i64, w: i64) -> Result<Tensor> {
        let b = ids.size()[0];
        let d = self.weight.size()[1];
        let codes = Tensor::f_embedding(&self.weight, ids, -1, false, false)?;
        Ok(codes.f_reshape([b, h, w, d])?.f_permute([0, 3, 1, 2])?)
    }
}
