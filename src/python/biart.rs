//! `lverse._native.BiartCore`: the native half of `lverse.BiART` (KV-cached sampler, beam
//! search, cached logits; the training forward is PyTorch's). Like AugVaeCore it holds only the configuration; tensors come from Python.

use super::specs::{to_tuples, unwrap, Params, SpecTuple};
use crate::biart::generate::{beam_search, cached_logits, generate, Generation};
use crate::biart::{Biart, BiartConfig};
use crate::error::Error;
use crate::sampling::{Sampling, Seeds};
use pyo3::prelude::*;
use pyo3_tch::PyTensor;
use std::time::{Duration, Instant};

/// How often a generation called from Python's main thread lets signal handlers run.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(100);

#[pyclass(name = "BiartCore", module = "lverse._native", frozen)]
pub struct PyBiartCore {
    config: BiartConfig,
}

#[pymethods]
impl PyBiartCore {
    #[new]
    #[pyo3(signature = (*, vocab_size, block_size, n_layer, n_head, n_embd, embd_pdrop, resid_pdrop, attn_pdrop))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        vocab_size: i64,
        block_size: i64,
        n_layer: i64,
        n_head: i64,
        n_embd: i64,
        embd_pdrop: f64,
        resid_pdrop: f64,
        attn_pdrop: f64,
    ) -> PyResult<Self> {
        let config = BiartConfig {
            vocab_size,
            block_size,
            n_layer,
            n_head,
            n_embd,
            embd_pdrop,
            resid_pdrop,
            attn_pdrop,
        };
        config.validate()?;
        Ok(PyBiartCore { config })
    }

    /// Every parameter and buffer with its minGPT name, shape and initialiser.
    fn param_specs(&self) -> PyResult<Vec<SpecTuple>> {
        Ok(to_tuples(Biart::param_specs(&self.config)?))
    }

    /// Continues (B, T) prefixes by `steps` tokens with the KV-cached sampler.
    #[pyo3(signature = (params, idx, seg, steps, *, greedy, temperature, top_k, top_p, seed, token_range,
        stop_token, pad_token, progress=None, interruptible=false, row_seeds=None))]
    #[allow(clippy::too_many_arguments)]
    fn generate(
        &self,
        py: Python<'_>,
        params: Params,
        idx: PyTensor,
        seg: PyTensor,
        steps: i64,
        greedy: bool,
        temperature: f64,
        top_k: Option<usize>,
        top_p: Option<f64>,
        seed: Option<u64>,
        token_range: Vec<(i64, i64)>,
        stop_token: Option<i64>,
        pad_token: i64,
        progress: Option<PyObject>,
        interruptible: bool,
        row_seeds: Option<Vec<u64>>,
    ) -> PyResult<PyTensor> {
        let tensors = unwrap(params);
        let seeds = match row_seeds {
            Some(rows) => Seeds::Rows(rows),
            None => Seeds::Batch(seed),
        };
        let request = Generation {
            steps,
            sampling: Sampling {
                greedy,
                temperature,
                top_k,
                top_p,
                token_ranges: token_range,
            },
            seeds,
            stop_token,
            pad_token,
        };
        let config = &self.config;
        let out = py.allow_threads(move || {
            hooked_decoding(config, &tensors, progress, interruptible, |model, hook| {
                generate(model, &idx.0, &seg.0, &request, &mut |done, total| {
                    hook.step(done, total)
                })
            })
        });
        Ok(PyTensor(out?))
    }

    /// Logits computed token by token through the KV cache (for checking the cache).
    fn cached_logits(
        &self,
        py: Python<'_>,
        params: Params,
        idx: PyTensor,
        seg: PyTensor,
        prefix: i64,
    ) -> PyResult<PyTensor> {
        let tensors = unwrap(params);
        let logits = py.allow_threads(move || {
            cached_logits(
                &decoding_model(&self.config, &tensors)?,
                &idx.0,
                &seg.0,
                prefix,
            )
        })?;
        Ok(PyTensor(logits))
    }

    /// Beam search: best continuation (B, steps) and its summed log-probability (B).
    /// With `interruptible` (called from the main thread) Ctrl-C stops it, as `generate`.
    #[pyo3(signature = (params, idx, seg, steps, *, beams, token_range, stop_token, pad_token,
        interruptible=false))]
    #[allow(clippy::too_many_arguments)]
    fn beam_search(
        &self,
        py: Python<'_>,
        params: Params,
        idx: PyTensor,
        seg: PyTensor,
        steps: i64,
        beams: usize,
        token_range: Vec<(i64, i64)>,
        stop_token: Option<i64>,
        pad_token: i64,
        interruptible: bool,
    ) -> PyResult<(PyTensor, PyTensor)> {
        let tensors = unwrap(params);
        let config = &self.config;
        let out = py.allow_threads(move || {
            hooked_decoding(config, &tensors, None, interruptible, |model, hook| {
                beam_search(
                    model,
                    &idx.0,
                    &seg.0,
                    steps,
                    beams,
                    &token_range,
                    stop_token,
                    pad_token,
                    &mut |done, total| hook.step(done, total),
                )
            })
        });
        let (tokens, scores) = out?;
        Ok((PyTensor(tokens), PyTensor(scores)))
    }
}

/// What a decoding loop does between steps. It takes the GIL briefly to call the progress
/// callback, and (called from the main thread, where Python runs signal handlers) at most
/// every SIGNAL_CHECK_INTERVAL to let Ctrl-C stop a long generation. Otherwise it never
/// waits for the GIL, which another busy Python thread may hold for ms.
struct StepHook {
    progress: Option<PyObject>,
    interruptible: bool,
    last_check: Instant,
    /// What a step's Python call raised (the callback's exception, or KeyboardInterrupt
    /// from a signal), re-raised as it is once the loop stops.
    raised: Option<PyErr>,
}

impl StepHook {
    fn new(progress: Option<PyObject>, interruptible: bool) -> Self {
        StepHook {
            progress,
            interruptible,
            last_check: Instant::now(),
            raised: None,
        }
    }

    fn step(&mut self, done: i64, total: i64) -> crate::error::Result<()> {
        let check_signals =
            self.interruptible && self.last_check.elapsed() >= SIGNAL_CHECK_INTERVAL;
        if self.progress.is_none() && !check_signals {
            return Ok(());
        }
        if check_signals {
            self.last_check = Instant::now();
        }
        Python::with_gil(|py| {
            let signals = if check_signals {
                py.check_signals()
            } else {
                Ok(())
            };
            let result = signals.and_then(|()| match &self.progress {
                None => Ok(()),
                Some(callback) => callback.call1(py, (done, total)).map(|_| ()),
            });
            result.map_err(|err| {
                let message = format!("generation stopped: {err}");
                self.raised = Some(err);
                Error::Callback(message)
            })
        })
    }
}

/// A decoding loop's result: the exception a step raised, as it is, or the core's error.
/// Runs a decoding loop on the model bound to `tensors` with a step hook, then turns the
/// outcome into Python's: what a step's Python call raised comes back as it was raised.
fn hooked_decoding<T>(
    config: &BiartConfig,
    tensors: &crate::params::TensorMap,
    progress: Option<PyObject>,
    interruptible: bool,
    run: impl FnOnce(&Biart, &mut StepHook) -> crate::error::Result<T>,
) -> PyResult<T> {
    let model = decoding_model(config, tensors)?;
    let mut hook = StepHook::new(progress, interruptible);
    let out = run(&model, &mut hook);
    reraise(out, hook.raised)
}

fn reraise<T>(out: crate::error::Result<T>, raised: Option<PyErr>) -> PyResult<T> {
    match (out, raised) {
        (Ok(out), _) => Ok(out),
        (Err(_), Some(err)) => Err(err),
        (Err(err), None) => Err(err.into()),
    }
}

/// The model bound to Python's tensors, readied for KV-cached decoding.
fn decoding_model(
    config: &BiartConfig,
    tensors: &crate::params::TensorMap,
) -> crate::error::Result<Biart> {
    let mut model = Biart::from_tensors(config, tensors)?;
    model.prepare_decoding()?;
    Ok(model)
}
