//! Linear and LayerNorm with minGPT's parameter names and initialisation.

use crate::error::Result;
use crate::params::{Init, Path};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// The kernel behind an inference-only `Linear`. libtorch's `linear` calls MKL's sgemm,
/// which on AMD CPUs takes a generic code path; oneDNN does not, and on the 2-core EPYC
/// we measured (benches/bench_biart.py) it runs a decoding step's linears, a few rows
/// against weights streamed from memory, about 1.4x faster. On an Intel Xeon the opposite
/// held: MKL was 1.6x to 4x faster. So which one decodes is measured once per process
/// (`onednn_is_faster`), not assumed. oneDNN reads the same dense fp32 weights (no packed
/// copy); for many rows (a prefill) it is no faster, and its fixed cost per call
/// (converting input and output, about 35 us) makes it 0.7x MKL from 512 rows at width 256,
/// so `OneDnn` hands calls of more than `ONEDNN_MAX_ROWS` rows to libtorch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinearKernel {
    Aten,
    OneDnn,
    /// Whichever of the two was faster on this machine for about this many rows.
    Measured,
}

/// Rows (batch x positions) up to which `LinearKernel::OneDnn` uses oneDNN.
const ONEDNN_MAX_ROWS: i64 = 256;

impl LinearKernel {
    /// The measured choice for fp32 on a CPU build that has oneDNN; libtorch's own linear
    /// otherwise (CUDA, half precision, autograd).
    pub fn for_inference(device: Device, kind: Kind) -> Self {
        if device == Device::Cpu && kind == Kind::Float && tch::utils::has_mkldnn() {
            LinearKernel::Measured
        } else {
            LinearKernel::Aten
        }
    }
}

/// Whether oneDNN beat libtorch's linear for a decoding step of `rows` rows (batch 1 and
/// batch 16 are timed apart: the winner can differ), once per process through a
/// 512 -> 2048 weight (a few milliseconds). A failed measurement keeps libtorch's kernel.
fn onednn_is_faster(rows: i64) -> bool {
    static FASTER: OnceLock<[bool; 2]> = OnceLock::new();
    let faster = FASTER.get_or_init(|| {
        [1, 16].map(|rows| {
            time_kernels(rows)
                .map(|(onednn, aten)| onednn < aten)
                .unwrap_or(false)
        })
    });
    faster[usize::from(rows > 4)]
}

/// Best-of-five time of 20 calls through each kernel: (oneDNN, libtorch).
fn time_kernels(rows: i64) -> Result<(Duration, Duration)> {
    let _guard = tch::no_grad_guard();
    let cpu = (Kind::Float, Device::Cpu);
    let linear = Linear {
        weight: Tensor::f_randn([2048, 512], cpu)?,
        bias: Some(Tensor::f_zeros([2048], cpu)?),
    };
    let x = Tensor::f_randn([rows, 512], cpu)?;
    let time = |kernel: LinearKernel| -> Result<Duration> {
        let _ = linear.forward_with(&x, kernel)?; // first call: oneDNN primitive creation
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let start = Instant::now();
            for _ in 0..20 {
                let _ = linear.forward_with(&x, kernel)?;
            }
            best = best.min(start.elapsed());
        }
        Ok(best)
    };
    Ok((time(LinearKernel::OneDnn)?, time(LinearKernel::Aten)?))
}

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

    /// `forward` through `kernel`; the oneDNN path has no autograd, so it is for
    /// inference only.
    pub fn forward_with(&self, x: &Tensor, kernel: LinearKernel) -> Result<Tensor> {
        let width = x.size().last().copied().unwrap_or(1).max(1);
        let rows = x.numel() as i64 / width;
        let onednn = match kernel {
            LinearKernel::Aten => false,
            LinearKernel::OneDnn => rows <= ONEDNN_MAX_ROWS,
            LinearKernel::Measured => rows <= ONEDNN_MAX_ROWS && onednn_is_faster(rows),
        };
        match onednn {
            true => Ok(x
                .f_contiguous()?
                .f_to_mkldnn(None)?
                .f_mkldnn_linear(&self.weight, self.bias.as_ref())?
                .f_to_dense(None, false)?),
            false => self.forward(x),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onednn_linear_matches_libtorch_linear() {
        tch::manual_seed(0);
        let linear = Linear {
            weight: Tensor::randn([96, 64], (Kind::Float, Device::Cpu)) * 0.1,
            bias: Some(Tensor::randn([96], (Kind::Float, Device::Cpu))),
        };
        // One decoding row, a few rows, a (B, T, C) prefill, a non-contiguous input, and
        // more rows than oneDNN takes.
        let wide = Tensor::randn([5, 128], (Kind::Float, Device::Cpu));
        let inputs = [
            Tensor::randn([1, 1, 64], (Kind::Float, Device::Cpu)),
            Tensor::randn([16, 64], (Kind::Float, Device::Cpu)),
            Tensor::randn([3, 7, 64], (Kind::Float, Device::Cpu)),
            wide.narrow(1, 32, 64),
            Tensor::randn([2, ONEDNN_MAX_ROWS, 64], (Kind::Float, Device::Cpu)),
        ];
        for kernel in [LinearKernel::OneDnn, LinearKernel::Measured] {
            for x in &inputs {
                let want = linear.forward(x).unwrap();
                let got = linear.forward_with(x, kernel).unwrap();
                assert_eq!(got.size(), want.size());
                let diff = (got - want).abs().max().double_value(&[]);
                assert!(diff < 1e-5, "max abs diff {diff} for input {:?}", x.size());
            }
        }
    }

    #[test]
    fn onednn_is_chosen_for_fp32_cpu_only() {
        let cpu = LinearKernel::for_inference(Device::Cpu, Kind::Float);
        assert_eq!(cpu == LinearKernel::Measured, tch::utils::has_mkldnn());
        for (device, kind) in [
            (Device::Cpu, Kind::BFloat16),
            (Device::Cpu, Kind::Half),
            (Device::Cuda(0), Kind::Float),
        ] {
            assert_eq!(
                LinearKernel::for_inference(device, kind),
                LinearKernel::Aten
            );
        }
    }
}
