//! The one error type of the native core. The Python binding maps each variant to one
//! exception class (see `python/errors.rs`), so every failure reaches Python as a proper
//! exception and never as a panic.

use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// A tensor had the wrong rank or size: maps to `ValueError`.
    Shape(String),
    /// A tensor had the wrong dtype or lived on the wrong device: maps to `TypeError`.
    Kind(String),
    /// A value outside its legal range (ids, options, NaN input): maps to `ValueError`.
    Value(String),
    /// Weights that do not fit the architecture: maps to `lverse.CheckpointError`.
    Checkpoint(String),
    /// A file that does not exist: maps to `FileNotFoundError`.
    NotFound(String),
    /// An image that could not be read or decoded: maps to `lverse.ImageError`.
    Image(String),
    /// Any other I/O failure: maps to `OSError`.
    Io(String),
    /// An error raised inside libtorch: maps to `RuntimeError`.
    Torch(String),
    /// An allocation libtorch refused (a batch far too large): maps to `MemoryError`.
    Memory(String),
    /// A Python call between steps (the progress hook, or signal handlers) raised. The
    /// binding re-raises the original exception; the mapping to `RuntimeError` is a fallback.
    Callback(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = match self {
            Error::Shape(m)
            | Error::Kind(m)
            | Error::Value(m)
            | Error::Checkpoint(m)
            | Error::NotFound(m)
            | Error::Image(m)
            | Error::Io(m)
            | Error::Torch(m)
            | Error::Memory(m)
            | Error::Callback(m) => m,
        };
        f.write_str(message)
    }
}

impl std::error::Error for Error {}

impl From<crate::image_decode::PixelError> for Error {
    fn from(err: crate::image_decode::PixelError) -> Self {
        match err {
            crate::image_decode::PixelError::Image(m) => Error::Image(m),
            crate::image_decode::PixelError::Value(m) => Error::Value(m),
        }
    }
}

impl From<tch::TchError> for Error {
    fn from(err: tch::TchError) -> Self {
        Error::Torch(err.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        match err.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(err.to_string()),
            _ => Error::Io(err.to_string()),
        }
    }
}
