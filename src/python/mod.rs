//! The binding layer: converts arguments, releases the GIL around native work and maps
//! core errors to Python exceptions. No model logic lives here.

mod augvae;
mod biart;
mod errors;
mod images;
mod specs;
mod tokenizer;
mod vq;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_IMAGE_SIZE", crate::image_io::MAX_SIZE)?;
    m.add_class::<augvae::PyAugVaeCore>()?;
    m.add_class::<biart::PyBiartCore>()?;
    m.add_class::<tokenizer::PyTokenizer>()?;
    m.add_function(wrap_pyfunction!(images::load_files, m)?)?;
    m.add_function(wrap_pyfunction!(images::load_pixels, m)?)?;
    m.add_function(wrap_pyfunction!(rayon_threads, m)?)?;
    m.add_function(wrap_pyfunction!(vq::vq_nearest, m)?)?;
    Ok(())
}

/// Number of threads in lverse's rayon pool (image decoding, VQ search, tokenizer
/// batches). Asking rayon's global pool would start its threads for nothing.
#[pyfunction]
fn rayon_threads() -> usize {
    crate::pool::install(rayon::current_num_threads)
}
