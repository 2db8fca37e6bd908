//! `lverse._native.AugVaeCore`: the native half of `lverse.AugVAE`. It holds only the
//! configuration; the Python module owns the tensors and passes them in on every call, so
//! `.to()`, `load_state_dict` and optimizers never leave the two sides out of step.

use super::specs::{to_tuples, unwrap, Params, SpecTuple};
use crate::augvae::{AugVae, AugVaeConfig};
use pyo3::prelude::*;
use pyo3_tch::PyTensor;

#[pyclass(name = "AugVaeCore", module = "lverse._native", frozen)]
pub struct PyAugVaeCore {
    config: AugVaeConfig,
}

#[pymethods]
impl PyAugVaeCore {
    #[new]
    #[pyo3(signature = (*, in_channels, out_channels, hidden_dim, ch_mult, inner_ch_mult, num_res_blocks,
        z_channels, codebook_dim, num_tokens, resolution, levels, single_level, use_attn, beta,
        ema_decay, ema_eps, norm_groups))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        in_channels: i64,
        out_channels: i64,
        hidden_dim: i64,
        ch_mult: Vec<i64>,
        inner_ch_mult: Vec<i64>,
        num_res_blocks: i64,
        z_channels: i64,
        codebook_dim: i64,
        num_tokens: i64,
        resolution: i64,
        levels: usize,
        single_level: Option<usize>,
        use_attn: bool,
        beta: f64,
        ema_decay: f64,
        ema_eps: f64,
        norm_groups: i64,
    ) -> PyResult<Self> {
        let config = AugVaeConfig {
            in_channels,
            out_channels,
            hidden_dim,
            ch_mult,
            inner_ch_mult,
            num_res_blocks,
            z_channels,
            codebook_dim,
            num_tokens,
            resolution,
            levels,
            single_level,
            use_attn,
            beta,
            ema_decay,
            ema_eps,
            norm_groups,
        };
        config.validate()?;
        Ok(PyAugVaeCore { config })
    }

    /// Every parameter of the architecture with its official name, shape, initialiser
    /// and weight tying, in registration order.
    fn param_specs(&self) -> PyResult<Vec<SpecTuple>> {
        Ok(to_tuples(AugVae::param_specs(&self.config)?))
    }

    /// Side of each quantized level's grid, fine to coarse.
    fn level_sizes(&self) -> Vec<i64> {
        self.config.level_sizes()
    }

    /// Number of code ids per image that `encode` returns.
    fn tokens_per_image(&self) -> i64 {
        self.config.tokens_per_image()
    }

    /// Images (B, C, H, W) to code ids (B, N).
    fn encode(&self, py: Python<'_>, params: Params, images: PyTensor) -> PyResult<PyTensor> {
        let tensors = unwrap(params);
        let ids = py.allow_threads(move || {
            AugVae::from_tensors(&self.config, &tensors)?.encode(&images.0)
        })?;
        Ok(PyTensor(ids))
    }

    /// Code ids (B, N) to images (B, C, H, W); `grid` = (h, w) of the finest level.
    #[pyo3(signature = (params, ids, grid=None))]
    fn decode(
        &self,
        py: Python<'_>,
        params: Params,
        ids: PyTensor,
        grid: Option<(i64, i64)>,
    ) -> PyResult<PyTensor> {
        let tensors = unwrap(params);
        let images = py.allow_threads(move || {
            AugVae::from_tensors(&self.config, &tensors)?.decode(&ids.0, grid)
        })?;
        Ok(PyTensor(images))
    }
}
