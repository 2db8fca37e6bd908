//! Image loading entry points of `lverse.images`.

use crate::image_io;
use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3_tch::PyTensor;
use std::path::PathBuf;

/// Decodes and preprocesses files in parallel: (B, 3, size, size) float32 in [-1, 1].
#[pyfunction]
#[pyo3(signature = (paths, size))]
pub fn load_files(py: Python<'_>, paths: Vec<PathBuf>, size: u32) -> PyResult<PyTensor> {
    let tensor = py.allow_threads(move || image_io::load_files(&paths, size))?;
    Ok(PyTensor(tensor))
}

/// Preprocesses uint8 arrays of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4).
#[pyfunction]
#[pyo3(signature = (arrays, size))]
pub fn load_pixels(
    py: Python<'_>,
    arrays: Vec<PyReadonlyArrayDyn<'_, u8>>,
    size: u32,
) -> PyResult<PyTensor> {
    let mut images = Vec::with_capacity(arrays.len());
    for (index, array) in arrays.iter().enumerate() {
        let shape = array.shape().to_vec();
        let (h, w, c) = match shape.as_slice() {
            [h, w] => (*h, *w, 1),
            [h, w, c] => (*h, *w, *c),
            _ => {
                return Err(PyValueError::new_err(format!(
                    "image {index}: expected an array of shape (H, W) or (H, W, C), got {shape:?}"
                )))
            }
        };
        let pixels = array.as_array().iter().copied().collect::<Vec<u8>>();
        images.push((pixels, h as u32, w as u32, c as u32));
    }
    let tensor = py.allow_threads(move || image_io::load_pixels(&images, size))?;
    Ok(PyTensor(tensor))
}
