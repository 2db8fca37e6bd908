//! The convolutional building blocks of AugVAE (taming-transformers style, SPEC §2.1).

use crate::error::Result;
use crate::params::{Init, Path};
use tch::Tensor;

pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    stride: i64,
    padding: i64,
}

impl Conv2d {
    pub fn new(p: &Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, padding: i64) -> Self {
        let fan_in = c_in * kernel * kernel;
        Conv2d {
            weight: p.param(
                "weight",
                &[c_out, c_in, kernel, kernel],
                Init::UniformFanIn(fan_in),
            ),
            bias: p.param("bias", &[c_out], Init::UniformFanIn(fan_in)),
            stride,
            padding,
        }
    }

    pub fn from_parts(weight: Tensor, bias: Tensor, stride: i64, padding: i64) -> Self {
        Conv2d {
            weight,
            bias,
            stride,
            padding,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_conv2d(
            &self.weight,
            Some(&self.bias),
            [self.stride, self.stride],
            [self.padding, self.padding],
            [1, 1],
            1,
        )?)
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

/// `GroupNorm(32, C, eps=1e-6)`.
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: i64,
}

impl GroupNorm {
    pub fn new(p: &Path, channels: i64, groups: i64) -> Self {
        GroupNorm {
            weight: p.param("weight", &[channels], Init::Ones),
            bias: p.param("bias", &[channels], Init::Zeros),
            groups,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_group_norm(
            self.groups,
            Some(&self.weight),
            Some(&self.bias),
            1e-6,
            true,
        )?)
    }
}

/// The same values with channels-last strides (NHWC in memory). libtorch's oneDNN
/// convolutions, GroupNorm and upsampling keep that layout from op to op, which is faster
/// on CPU, and the quantizer's (B, H, W, C) view of it is free.
pub fn channels_last(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_permute([0, 2, 3, 1])?
        .f_contiguous()?
        .f_permute([0, 3, 1, 2])?)
}

/// swish(x) = x * sigmoid(x), computed by libtorch's fused SiLU.
pub fn swish(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_silu()?)
}

pub struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    norm2: GroupNorm,
    conv2: Conv2d,
    nin_shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    pub fn new(p: &Path, c_in: i64, c_out: i64, groups: i64) -> Self {
        ResnetBlock {
            norm1: GroupNorm::new(&p.sub("norm1"), c_in, groups),
            conv1: Conv2d::new(&p.sub("conv1"), c_in, c_out, 3, 1, 1),
            norm2: GroupNorm::new(&p.sub("norm2"), c_out, groups),
            conv2: Conv2d::new(&p.sub("conv2"), c_out, c_out, 3, 1, 1),
            nin_shortcut: (c_in != c_out)
                .then(|| Conv2d::new(&p.sub("nin_shortcut"), c_in, c_out, 1, 1, 0)),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&swish(&self.norm1.forward(x)?)?)?;
        // Dropout has p = 0 in every official configuration, so it is the identity.
        let h = self.conv2.forward(&swish(&self.norm2.forward(&h)?)?)?;
        let skip = match &self.nin_shortcut {
            Some(conv) => conv.forward(x)?,
            None => x.shallow_clone(),
        };
        Ok(skip.f_add(&h)?)
    }
}

/// Zero-pad right and bottom by one, then a stride-2 3x3 convolution.
pub struct Downsample {
    conv: Conv2d,
}

impl Downsample {
    pub fn new(p: &Path, channels: i64) -> Self {
        Downsample {
            conv: Conv2d::new(&p.sub("conv"), channels, channels, 3, 2, 0),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.conv.forward(&x.f_constant_pad_nd([0, 1, 0, 1])?)
    }
}

/// Nearest-neighbour x2, then a 3x3 convolution.
pub struct Upsample {
    conv: Conv2d,
}

impl Upsample {
    pub fn new(p: &Path, channels: i64) -> Self {
        Upsample {
            conv: Conv2d::new(&p.sub("conv"), channels, channels, 3, 1, 1),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (h, w) = (x.size()[2], x.size()[3]);
        self.conv
            .forward(&x.f_upsample_nearest2d([h * 2, w * 2], Some(2.0), Some(2.0))?)
    }
}

/// Single-head spatial self-attention with 1x1 convolutions (only when `use_attn`).
pub struct AttnBlock {
    norm: GroupNorm,
    q: Conv2d,
    k: Conv2d,
    v: Conv2d,
    proj_out: Conv2d,
}

impl AttnBlock {
    pub fn new(p: &Path, channels: i64, groups: i64) -> Self {
        AttnBlock {
            norm: GroupNorm::new(&p.sub("norm"), channels, groups),
            q: Conv2d::new(&p.sub("q"), channels, channels, 1, 1, 0),
            k: Conv2d::new(&p.sub("k"), channels, channels, 1, 1, 0),
            v: Conv2d::new(&p.sub("v"), channels, channels, 1, 1, 0),
            proj_out: Conv2d::new(&p.sub("proj_out"), channels, channels, 1, 1, 0),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let size = x.size();
        let (b, c, h, w) = (size[0], size[1], size[2], size[3]);
        let normed = self.norm.forward(x)?;
        let q = self
            .q
            .forward(&normed)?
            .f_reshape([b, c, h * w])?
            .f_permute([0, 2, 1])?;
        let k = self.k.forward(&normed)?.f_reshape([b, c, h * w])?;
        let v = self.v.forward(&normed)?.f_reshape([b, c, h * w])?;
        let weights = q
            .f_bmm(&k)?
            .f_mul_scalar((c as f64).powf(-0.5))?
            .f_softmax(2, None::<tch::Kind>)?;
        let attended = v
            .f_bmm(&weights.f_permute([0, 2, 1])?)?
            .f_reshape([b, c, h, w])?;
        Ok(x.f_add(&self.proj_out.forward(&attended)?)?)
    }
}
