//! Linear and LayerNorm with minGPT's parameter names and initialisation.

use crate::error::Result;
use crate::params::{Init, Path};
use tch::Tensor;

pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// `nn.Linear(c_in, c_out)` initialised N(0, 0.02) with a zero bias, as minGPT does.
    pub fn new(p: &Path, c_in: i64, c_out: i64, bias: bool) -> Self {
        Linear {
            weight: p.param("weight", &[c_out, c_in], Init::Normal(0.02)),
            bias: bias.then(|| p.param("bias", &[c_out], Init::Zeros)),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_linear(&self.weight, self.bias.as_ref())?)
    }
}

pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    width: i64,
}

impl LayerNorm {
    pub fn new(p: &Path, width: i64) -> Self {
        LayerNorm {
            weight: p.param("weight", &[width], Init::Ones),
            bias: p.param("bias", &[width], Init::Zeros),
            width,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_layer_norm(
            [self.width],
            Some(&self.weight),
            Some(&self.bias),
            1e-5,
            true,
        )?)
    }
}
