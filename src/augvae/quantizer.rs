//! The EMA vector quantizer with a codebook shared by all levels (SPEC §2.4).

use crate::error::{Error, Result};
use crate::params::{Init, Path, Var};
use crate::vq;
use tch::{Reduction, Tensor};

pub struct EmaQuantizer {
    weight: Tensor,
    cluster_size: Tensor,
    embed_avg: Tensor,
    beta: f64,
    decay: f64,
    eps: f64,
}

/// What one quantized level gives back.
pub struct Quantized {
    /// Straight-through codes, (B, D, H, W): forward value of the codebook entries,
    /// gradient of the encoder output.
    pub codes: Tensor,
    /// `beta * mse(codes, z)`, gradient only towards the encoder.
    pub commitment: Tensor,
    /// (B, H*W) code ids in raster order.
    pub ids: Tensor,
}

impl EmaQuantizer {
    /// `tie_to` names the level-0 quantizer whose tensors this one shares.
    pub fn new(
        p: &Path,
        num_tokens: i64,
        dim: i64,
        beta: f64,
        decay: f64,
        eps: f64,
        tie_to: Option<&Path>,
    ) -> Self {
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
        let cluster_size = var("cluster_size", &[num_tokens], Init::Zeros);
        let embed_avg = var(
            "embed_avg",
            &[num_tokens, dim],
            Init::CopyOf(e.full_name("weight")),
        );
        EmaQuantizer {
            weight,
            cluster_size,
            embed_avg,
            beta,
            decay,
            eps,
        }
    }

    pub fn num_tokens(&self) -> i64 {
        self.weight.size()[0]
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

    /// Quantizes z (B, D, H, W); in training with `update_ema` the shared codebook moves
    /// after the lookup, as in the official code.
    pub fn forward(&self, z: &Tensor, update_ema: bool) -> Result<Quantized> {
        let size = z.size();
        let (b, d, h, w) = (size[0], size[1], size[2], size[3]);
        let z_bhwc = z.f_permute([0, 2, 3, 1])?;
        let flat = z_bhwc.f_reshape([-1, d])?;
        let ids = {
            let _guard = tch::no_grad_guard();
            vq::nearest(&flat, &self.weight)?.0
        };
        let looked_up =
            Tensor::f_embedding(&self.weight, &ids, -1, false, false)?.f_view([b, h, w, d])?;
        if update_ema {
            self.ema_update(&flat.f_detach()?, &ids)?;
        }
        let commitment = looked_up
            .f_detach()?
            .f_mse_loss(&z_bhwc, Reduction::Mean)?
            .f_mul_scalar(self.beta)?;
        let straight_through = z_bhwc.f_add(&looked_up.f_sub(&z_bhwc)?.f_detach()?)?;
        Ok(Quantized {
            codes: straight_through.f_permute([0, 3, 1, 2])?,
            commitment,
            ids: ids.f_reshape([b, h * w])?,
        })
    }

    /// Codebook rows for ids (B, H*W) as a (B, D, H, W) map.
    pub fn lookup(&self, ids: &Tensor, h: i64, w: i64) -> Result<Tensor> {
        let b = ids.size()[0];
        let d = self.weight.size()[1];
        let codes = Tensor::f_embedding(&self.weight, ids, -1, false, false)?;
        Ok(codes.f_reshape([b, h, w, d])?.f_permute([0, 3, 1, 2])?)
    }

    /// Exponential moving averages of cluster sizes and code sums, then the smoothed
    /// normalisation that defines the new codebook (in place: Python sees the change).
    /// Per-code sums use index_add instead of a one-hot matmul: the same sums without an
    /// N x K temporary.
    fn ema_update(&self, flat: &Tensor, ids: &Tensor) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let k = self.num_tokens();
        let kind = self.weight.kind();
        let device = self.weight.device();
        if flat.kind() != kind {
            return Err(Error::Kind(format!(
                "EMA update needs features in the codebook's dtype {kind:?}, got {:?}",
                flat.kind()
            )));
        }
        let ones = Tensor::f_ones([ids.size()[0]], (kind, device))?;
        let counts = Tensor::f_zeros([k], (kind, device))?.f_index_add(0, ids, &ones)?;
        let sums =
            Tensor::f_zeros([k, flat.size()[1]], (kind, device))?.f_index_add(0, ids, flat)?;
        let keep = self.decay;
        let mut cluster_size = self.cluster_size.shallow_clone();
        let mut embed_avg = self.embed_avg.shallow_clone();
        let _ = cluster_size.f_mul_scalar_(keep)?;
        let _ = cluster_size.f_add_(&counts.f_mul_scalar(1.0 - keep)?)?;
        let _ = embed_avg.f_mul_scalar_(keep)?;
        let _ = embed_avg.f_add_(&sums.f_mul_scalar(1.0 - keep)?)?;
        self.renormalize()
    }

    /// The codebook from the EMA statistics: code sums over Laplace-smoothed cluster sizes
    /// (in place). Also run after DDP ranks average their statistics.
    pub fn renormalize(&self) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let k = self.num_tokens();
        let n = self.cluster_size.f_sum(self.cluster_size.kind())?;
        let smoothed = self
            .cluster_size
            .f_add_scalar(self.eps)?
            .f_div(&n.f_add_scalar(k as f64 * self.eps)?)?
            .f_mul(&n)?;
        let normalized = self.embed_avg.f_div(&smoothed.f_unsqueeze(1)?)?;
        let mut weight = self.weight.shallow_clone();
        weight.f_copy_(&normalized)?;
        Ok(())
    }
}
