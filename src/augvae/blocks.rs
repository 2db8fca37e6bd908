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

    pub fn bias(&self) -> &Tensor {
        &self.bias
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

/// Nearest-neighbour x2, then a 3x3 convolution, computed without the upsampled tensor.
///
/// Each output pixel (2i+a, 2j+b) of conv3x3(up2(x)) sees only a 2x2 window of x: along
/// each axis, phase 0 reads x[i-1] with kernel row 0 and x[i] with rows 1+2; phase 1
/// reads x[i] with rows 0+1 and x[i+1] with row 2. So the four phases are four 2x2
/// convolutions of x with summed kernels, run as one convolution with 4x the output
/// channels: 16/36 of the multiply-adds, the same result up to float rounding.
pub struct Upsample {
    conv: Conv2d,
}

/// Kernel rows (or columns) summed for each phase: phase 0 -> [k0, k1+k2], 1 -> [k0+k1, k2].
fn phase_taps(k: &Tensor, dim: i64, phase: i64) -> Result<Tensor> {
    let tap = |i: i64| k.f_narrow(dim, i, 1);
    let (first, second) = if phase == 0 {
        (tap(0)?, tap(1)?.f_add(&tap(2)?)?)
    } else {
        (tap(0)?.f_add(&tap(1)?)?, tap(2)?)
    };
    Ok(Tensor::f_cat(&[first, second], dim)?)
}

impl Upsample {
    pub fn new(p: &Path, channels: i64) -> Self {
        Upsample {
            conv: Conv2d::new(&p.sub("conv"), channels, channels, 3, 1, 1),
        }
    }

    /// The four phase kernels stacked on the output axis, phase (a, b) at 2a+b: (4C, C, 2, 2).
    fn phase_kernels(&self) -> Result<Tensor> {
        let w = self.conv.weight();
        let mut kernels = Vec::with_capacity(4);
        for a in 0..2 {
            let rows = phase_taps(w, 2, a)?;
            for b in 0..2 {
                kernels.push(phase_taps(&rows, 3, b)?);
            }
        }
        Ok(Tensor::f_cat(&kernels, 0)?)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let size = x.size();
        let (n, h, w) = (size[0], size[2], size[3]);
        let c_out = self.conv.weight().size()[0];
        let bias = self.conv.bias().f_repeat([4])?;
        let padded = x.f_constant_pad_nd([1, 1, 1, 1])?;
        // (N, 4C, H+1, W+1): phase (a, b) of output (i, j) sits at window (i+a, j+b).
        let phases = padded.f_conv2d(
            &self.phase_kernels()?,
            Some(&bias),
            [1, 1],
            [0, 0],
            [1, 1],
            1,
        )?;
        let out = Tensor::f_empty([n, h, 2, w, 2, c_out], (x.kind(), x.device()))?;
        for a in 0..2 {
            for b in 0..2 {
                let phase = phases
                    .f_narrow(1, (2 * a + b) * c_out, c_out)?
                    .f_narrow(2, a, h)?
                    .f_narrow(3, b, w)?;
                out.f_select(2, a)?
                    .f_select(3, b)?
                    .f_copy_(&phase.f_permute([0, 2, 3, 1])?)?;
            }
        }
        // NHWC memory seen as NCHW: the channels-last layout the next convolution wants.
        Ok(out
            .f_view([n, 2 * h, 2 * w, c_out])?
            .f_permute([0, 3, 1, 2])?)
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
