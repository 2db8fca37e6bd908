//! The entry point of `lverse.vq`.

use crate::vq;
use pyo3::prelude::*;
use pyo3_tch::PyTensor;

/// (ids int64 (N,), squared distances (N,)) of the nearest codebook row of each row of z.
/// Validation and errors as `lverse.vq.nearest`; runs without the GIL.
#[pyfunction]
#[pyo3(signature = (z, codebook))]
pub fn vq_nearest(
    py: Python<'_>,
    z: PyTensor,
    codebook: PyTensor,
) -> PyResult<(PyTensor, PyTensor)> {
    let (ids, distances) = py.allow_threads(move || vq::nearest(&z.0, &codebook.0))?;
    Ok((PyTensor(ids), PyTensor(distances)))
}
