//! AugVAE's architecture hyper-parameters (SPEC §2.2) and what follows from them.

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct AugVaeConfig {
    pub in_channels: i64,
    pub out_channels: i64,
    pub hidden_dim: i64,
    /// Channel multipliers of the first encoder and the last decoder ("f=4" / "f'=4").
    pub ch_mult: Vec<i64>,
    /// Channel multipliers of the intermediate encoders and decoders (hard-coded [2, 4] in
    /// the official code).
    pub inner_ch_mult: Vec<i64>,
    pub num_res_blocks: i64,
    pub z_channels: i64,
    pub codebook_dim: i64,
    pub num_tokens: i64,
    pub resolution: i64,
    /// Number of quantized levels of the multi-level model (4 for AugVAE-ML).
    pub levels: usize,
    /// `Some(j)` for a single-level model fine-tuned to keep level j (fine to coarse);
    /// AugVAE-SL keeps level 1, the 32x32 grid.
    pub single_level: Option<usize>,
    /// Spatial self-attention blocks (`use_attn`, off in both official configs).
    pub use_attn: bool,
    pub beta: f64,
    pub ema_decay: f64,
    pub ema_eps: f64,
    pub norm_groups: i64,
}

impl AugVaeConfig {
    /// The official AugVAE-ML (SPEC §2.2, §2.3).
    pub fn ml() -> Self {
        AugVaeConfig {
            in_channels: 3,
            out_channels: 3,
            hidden_dim: 128,
            ch_mult: vec![1, 2, 4],
            inner_ch_mult: vec![2, 4],
            num_res_blocks: 2,
            z_channels: 256,
            codebook_dim: 256,
            num_tokens: 8192,
            resolution: 256,
            levels: 4,
            single_level: None,
            use_attn: false,
            beta: 0.25,
            ema_decay: 0.99,
            ema_eps: 1e-5,
            norm_groups: 32,
        }
    }

    /// The official AugVAE-SL: AugVAE-ML fine-tuned to the 32x32 level (SPEC §2.5).
    pub fn sl() -> Self {
        AugVaeConfig {
            single_level: Some(1),
            ..Self::ml()
        }
    }

    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("hidden_dim", self.hidden_dim),
            ("num_res_blocks", self.num_res_blocks),
            ("z_channels", self.z_channels),
            ("codebook_dim", self.codebook_dim),
            ("num_tokens", self.num_tokens),
            ("resolution", self.resolution),
            ("norm_groups", self.norm_groups),
        ];
        for (name, value) in positive {
            if value < 1 {
                return Err(Error::Value(format!("{name} must be >= 1, got {value}")));
            }
        }
        for (name, mult) in [
            ("ch_mult", &self.ch_mult),
            ("inner_ch_mult", &self.inner_ch_mult),
        ] {
            if mult.is_empty() || mult.iter().any(|&m| m < 1) {
                return Err(Error::Value(format!(
                    "{name} must be a non-empty list of positive integers, got {mult:?}"
                )));
            }
            for &m in mult.iter() {
                if (self.hidden_dim * m) % self.norm_groups != 0 {
                    return Err(Error::Value(format!(
                        "hidden_dim * {name} entries must be divisible by the {} GroupNorm groups, \
                         got hidden_dim={} and multiplier {m}",
                        self.norm_groups, self.hidden_dim
                    )));
                }
            }
        }
        if self.levels < 1 {
            return Err(Error::Value("levels must be >= 1".into()));
        }
        // The EMA update divides by (cluster size + eps) and blends by the decay: values
        // outside these ranges write NaN or an exploding codebook on the first step.
        let ranges = [
            ("beta", self.beta, self.beta >= 0.0, ">= 0"),
            (
                "ema_decay",
                self.ema_decay,
                (0.0..1.0).contains(&self.ema_decay),
                "in [0, 1)",
            ),
            ("ema_eps", self.ema_eps, self.ema_eps > 0.0, "> 0"),
        ];
        for (name, value, ok, expected) in ranges {
            if !(ok && value.is_finite()) {
                return Err(Error::Value(format!(
                    "{name} must be {expected}, got {value}"
                )));
            }
        }
        if let Some(j) = self.single_level {
            if j + 1 >= self.levels {
                return Err(Error::Value(format!(
                    "single_level must name a level below the coarsest one (0..={}), got {j}",
                    self.levels.saturating_sub(2)
                )));
            }
        }
        let mut res = self.resolution;
        let factors = std::iter::once(self.ch_mult.len()).chain(std::iter::repeat_n(
            self.inner_ch_mult.len(),
            self.levels - 1,
        ));
        for (level, n) in factors.enumerate() {
            let factor = 1i64 << (n - 1);
            if res % factor != 0 || res / factor < 1 {
                return Err(Error::Value(format!(
                    "resolution {} does not divide down to level {level}: {res} is not divisible by {factor}",
                    self.resolution
                )));
            }
            res /= factor;
        }
        Ok(())
    }

    /// Side length of each quantized level's grid, fine to coarse (64, 32, 16, 8 for ML).
    pub fn level_sizes(&self) -> Vec<i64> {
        let mut sizes = Vec::with_capacity(self.levels);
        let mut res = self.resolution >> (self.ch_mult.len() - 1);
        sizes.push(res);
        for _ in 1..self.levels {
            res >>= self.inner_ch_mult.len() - 1;
            sizes.push(res);
        }
        sizes
    }

    /// Levels whose codes `encode` returns and `decode` reads, fine to coarse.
    pub fn token_levels(&self) -> Vec<usize> {
        match self.single_level {
            Some(j) => vec![j],
            None => (0..self.levels).collect(),
        }
    }

    /// Codes per image (1024 for SL at 256 px, 5440 for ML).
    pub fn tokens_per_image(&self) -> i64 {
        let sizes = self.level_sizes();
        self.token_levels()
            .iter()
            .map(|&l| sizes[l] * sizes[l])
            .sum()
    }

    /// Encoders present: all levels for ML, levels 0..=j for SL.
    pub fn num_encoders(&self) -> usize {
        self.single_level.map_or(self.levels, |j| j + 1)
    }

    /// Multi-level decoder indices kept (SL drops the coarse ones and renumbers from 0).
    pub fn kept_ml_decoders(&self) -> std::ops::Range<usize> {
        match self.single_level {
            Some(j) => (self.levels - 1 - j)..self.levels,
            None => 0..self.levels,
        }
    }
}
