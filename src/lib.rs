//! lverse: L-Verse (AugVAE + BiART) on a libtorch core.
//!
//! The core (everything outside `python`) knows nothing of Python; the `python` feature,
//! enabled by maturin, adds the binding layer.

pub mod augvae;
pub mod biart;
mod contained;
pub mod error;
pub mod image_decode;
pub mod image_io;
pub mod params;
mod pool;
pub mod resample;
pub mod sampling;
pub mod tokenizer;
pub mod vq;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, Result};
