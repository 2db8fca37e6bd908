//! AugVAE-ML and AugVAE-SL: the module tree with official names, and the two native
//! inference entry points (encode to ids, decode from ids). Training runs in PyTorch
//! (`lverse/augvae.py`) on the same tensors.

use super::blocks::{channels_last, Conv2d};
use super::config::AugVaeConfig;
use super::decoder::{Decoder, DecoderShape};
use super::encoder::{Encoder, EncoderShape};
use super::quantizer::EmaQuantizer;
use crate::error::{Error, Result};
use crate::params::{common_kind, Init, ParamSpec, ParamTree, Path, TensorMap, Var};
use tch::{Kind, Tensor};

pub struct AugVae {
    config: AugVaeConfig,
    encoders: Vec<Encoder>,
    pre_quants: Vec<Conv2d>,
    quantizers: Vec<EmaQuantizer>,
    post_quants: Vec<Conv2d>,
    decoders: Vec<Decoder>,
    /// SL only: 1x1 convolutions standing in for the concatenated ML decoder input.
    connectors: Vec<Conv2d>,
    kind: Kind,
}

/// A 1x1 convolution whose weight (not bias) is level 0's, as `quant_weight_share` does.
fn shared_1x1(p: &Path, level: usize, c_in: i64, c_out: i64, tie: &str) -> Conv2d {
    let lp = p.sub(level);
    let fan_in = c_in;
    let tied_to = (level > 0).then(|| format!("{tie}.0.weight"));
    let weight = lp.var(Var {
        name: "weight",
        shape: &[c_out, c_in, 1, 1],
        init: Init::UniformFanIn(fan_in),
        trainable: true,
        buffer: false,
        tied_to,
    });
    let bias = lp.param("bias", &[c_out], Init::UniformFanIn(fan_in));
    Conv2d::from_parts(weight, bias, 1, 0)
}

impl AugVae {
    fn build(p: &Path, c: &AugVaeConfig) -> Self {
        let groups = c.norm_groups;
        let encoders = (0..c.num_encoders())
            .map(|k| {
                let shape = EncoderShape {
                    in_channels: if k == 0 { c.in_channels } else { c.z_channels },
                    hidden_dim: c.hidden_dim,
                    ch_mult: if k == 0 {
                        c.ch_mult.clone()
                    } else {
                        c.inner_ch_mult.clone()
                    },
                    num_res_blocks: c.num_res_blocks,
                    z_channels: c.z_channels,
                    use_attn: c.use_attn,
                    groups,
                };
                Encoder::new(&p.sub("encoders").sub(k), &shape)
            })
            .collect();
        let pre = p.sub("pre_quants");
        let post = p.sub("post_quants");
        let quant = p.sub("quantizers");
        let pre_quants = (0..c.levels)
            .map(|l| shared_1x1(&pre, l, c.z_channels, c.codebook_dim, "pre_quants"))
            .collect();
        let quantizers = (0..c.levels)
            .map(|l| {
                let tie = quant.sub(0);
                EmaQuantizer::new(
                    &quant.sub(l),
                    c.num_tokens,
                    c.codebook_dim,
                    (l > 0).then_some(&tie),
                )
            })
            .collect();
        let post_quants = (0..c.levels)
            .map(|l| shared_1x1(&post, l, c.codebook_dim, c.z_channels, "post_quants"))
            .collect();
        let decoders = c
            .kept_ml_decoders()
            .enumerate()
            .map(|(index, ml_index)| {
                let last = ml_index == c.levels - 1;
                let shape = DecoderShape {
                    in_channels: if ml_index == 0 {
                        c.z_channels
                    } else {
                        2 * c.z_channels
                    },
                    out_channels: if last { c.out_channels } else { c.z_channels },
                    hidden_dim: c.hidden_dim,
                    ch_mult: if last {
                        c.ch_mult.clone()
                    } else {
                        c.inner_ch_mult.clone()
                    },
                    num_res_blocks: c.num_res_blocks,
                    use_attn: c.use_attn,
                    groups,
                };
                Decoder::new(&p.sub("decoders").sub(index), &shape)
            })
            .collect();
        let connectors = match c.single_level {
            Some(j) => (0..=j)
                .map(|i| {
                    Conv2d::new(
                        &p.sub("connectors").sub(i),
                        c.z_channels,
                        2 * c.z_channels,
                        1,
                        1,
                        0,
                    )
                })
                .collect(),
            None => Vec::new(),
        };
        AugVae {
            config: c.clone(),
            encoders,
            pre_quants,
            quantizers,
            post_quants,
            decoders,
            connectors,
            kind: Kind::Float,
        }
    }

    /// Every parameter of this architecture: official name, shape, initialiser, tying.
    pub fn param_specs(config: &AugVaeConfig) -> Result<Vec<ParamSpec>> {
        config.validate()?;
        let tree = ParamTree::collect();
        Self::build(&tree.root(), config);
        Ok(tree.into_specs())
    }

    /// Binds the architecture to live tensors (shallow clones: no weight is copied).
    pub fn from_tensors(config: &AugVaeConfig, tensors: &TensorMap) -> Result<Self> {
        config.validate()?;
        let tree = ParamTree::load(tensors);
        let mut model = Self::build(&tree.root(), config);
        tree.finish("AugVAE weights do not fit the configuration")?;
        model.kind = common_kind(tensors)?;
        Ok(model)
    }

    pub fn config(&self) -> &AugVaeConfig {
        &self.config
    }

    fn check_images(&self, x: &Tensor) -> Result<()> {
        let size = x.size();
        if size.len() != 4 || size[1] != self.config.in_channels {
            return Err(Error::Shape(format!(
                "expected images of shape (B, {}, H, W), got {:?}",
                self.config.in_channels, size
            )));
        }
        if x.kind() != self.kind {
            return Err(Error::Kind(format!(
                "expected a {:?} image tensor (the model's dtype), got {:?}",
                self.kind,
                x.kind()
            )));
        }
        let device = self.quantizers[0].codebook().device();
        if x.device() != device {
            return Err(Error::Kind(format!(
                "images are on {:?} but the model is on {:?}",
                x.device(),
                device
            )));
        }
        let factor =
            self.config.resolution / self.config.level_sizes()[self.config.num_encoders() - 1];
        if size[2] % factor != 0 || size[3] % factor != 0 || size[2] == 0 || size[3] == 0 {
            return Err(Error::Shape(format!(
                "image height and width must be positive multiples of {factor}, got {}x{}",
                size[2], size[3]
            )));
        }
        Ok(())
    }

    /// Continuous encoder outputs of every present encoder, fine to coarse (each encoder
    /// reads the un-quantized output of the previous one).
    fn encode_features(&self, x: &Tensor, up_to: usize) -> Result<Vec<Tensor>> {
        let mut features = Vec::with_capacity(up_to + 1);
        let mut h = channels_last(x)?;
        for encoder in &self.encoders[..=up_to] {
            h = encoder.forward(&h)?;
            features.push(h.shallow_clone());
        }
        Ok(features)
    }

    /// Code ids (B, N) in raster order: the kept level for SL, every level finest first
    /// for ML. Runs without autograd and skips quantizing levels whose codes it does not
    /// return (SL's 64x64 level).
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        self.check_images(x)?;
        let _guard = tch::no_grad_guard();
        let levels = self.config.token_levels();
        let deepest = *levels.last().unwrap_or(&0);
        let features = self.encode_features(x, deepest)?;
        let mut ids = Vec::with_capacity(levels.len());
        for &level in &levels {
            let h = self.pre_quants[level].forward(&features[level])?;
            ids.push(self.quantizers[level].nearest_ids(&h)?);
        }
        Ok(Tensor::f_cat(&ids, 1)?)
    }

    /// Reconstruction (B, C, H, W) from ids (B, N); the decoder's raw, unclamped output.
    pub fn decode(&self, ids: &Tensor, grid: Option<(i64, i64)>) -> Result<Tensor> {
        let levels = self.config.token_levels();
        let grids = self.level_grids(ids, grid)?;
        let mut offset = 0;
        let mut codes = Vec::with_capacity(levels.len());
        for (&level, &(h, w)) in levels.iter().zip(&grids) {
            let part = ids.f_narrow(1, offset, h * w)?;
            offset += h * w;
            codes.push(self.quantizers[level].lookup(&part, h, w)?);
        }
        self.decode_codes(&codes)
    }

    /// Grid (h, w) of each token level for an id tensor; square grids unless given.
    fn level_grids(&self, ids: &Tensor, grid: Option<(i64, i64)>) -> Result<Vec<(i64, i64)>> {
        let size = ids.size();
        if size.len() != 2 {
            return Err(Error::Shape(format!(
                "expected ids of shape (B, N), got {size:?}"
            )));
        }
        if ids.kind() != Kind::Int64 {
            return Err(Error::Kind(format!(
                "expected int64 ids, got {:?}",
                ids.kind()
            )));
        }
        let device = self.quantizers[0].codebook().device();
        if ids.device() != device {
            return Err(Error::Kind(format!(
                "ids are on {:?} but the model is on {:?}",
                ids.device(),
                device
            )));
        }
        let sizes = self.config.level_sizes();
        let levels = self.config.token_levels();
        // Grid of the finest returned level; coarser levels follow by the encoders' factor.
        let (h0, w0) = grid.unwrap_or((sizes[levels[0]], sizes[levels[0]]));
        let step = 1i64 << (self.config.inner_ch_mult.len() - 1);
        // Every returned level's grid must be whole: the finest side is a multiple of the
        // coarsest level's factor. Sides above N could only overflow the count below.
        let coarsest = step.pow((levels[levels.len() - 1] - levels[0]) as u32);
        let fits = |side: i64| side >= 1 && side <= size[1].max(1) && side % coarsest == 0;
        if !(fits(h0) && fits(w0)) {
            return Err(Error::Value(format!(
                "grid must be (h, w) with positive sides, multiples of {coarsest}, whose \
                 levels hold the {} ids per image; got ({h0}, {w0})",
                size[1]
            )));
        }
        let grids: Vec<(i64, i64)> = levels
            .iter()
            .map(|&l| {
                let shift = step.pow((l - levels[0]) as u32);
                (h0 / shift, w0 / shift)
            })
            .collect();
        let expected: i64 = grids.iter().map(|(h, w)| h * w).sum();
        if size[1] != expected {
            return Err(Error::Shape(format!(
                "expected {expected} ids per image for a {h0}x{w0} grid, got {}",
                size[1]
            )));
        }
        if ids.numel() > 0 {
            let _guard = tch::no_grad_guard();
            let low = ids.f_min()?.int64_value(&[]);
            let high = ids.f_max()?.int64_value(&[]);
            let k = self.config.num_tokens;
            if low < 0 || high >= k {
                let bad = if low < 0 { low } else { high };
                return Err(Error::Value(format!(
                    "code id {bad} is outside the codebook range [0, {k})"
                )));
            }
        }
        Ok(grids)
    }

    /// Decodes quantized code maps (one per returned level, fine to coarse).
    fn decode_codes(&self, codes: &[Tensor]) -> Result<Tensor> {
        if self.config.single_level.is_some() {
            let mut d = self.post_quants[0].forward(&codes[0])?;
            for (connector, decoder) in self.connectors.iter().zip(&self.decoders) {
                d = decoder.forward(&connector.forward(&d)?)?;
            }
            return Ok(d);
        }
        // ML: coarse to fine; post_quants[i] belongs to the i-th coarsest level and each
        // decoder reads [this level's code, upsampled result] concatenated on channels.
        let mut dec: Option<Tensor> = None;
        for (i, decoder) in self.decoders.iter().enumerate() {
            let level_codes = &codes[codes.len() - 1 - i];
            let q = self.post_quants[i].forward(level_codes)?;
            let input = match dec {
                None => q,
                Some(previous) => Tensor::f_cat(&[q, previous], 1)?,
            };
            dec = Some(decoder.forward(&input)?);
        }
        dec.ok_or_else(|| Error::Value("the model has no decoder".into()))
    }
}
