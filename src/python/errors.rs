//! The one place where core errors become Python exceptions. lverse's own exception
//! classes are defined in Python (`lverse/errors.py`, so they can also subclass the
//! built-in that fits) and looked up here when raised.

use crate::error::Error;
use pyo3::exceptions::{
    PyFileNotFoundError, PyMemoryError, PyOSError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::PyType;

fn lverse_exception(name: &str, message: String) -> PyErr {
    Python::with_gil(|py| {
        let class = py
            .import("lverse.errors")
            .and_then(|module| module.getattr(name))
            .and_then(|class| class.downcast_into::<PyType>().map_err(PyErr::from));
        match class {
            Ok(class) => PyErr::from_type(class, message),
            Err(_) => PyRuntimeError::new_err(message),
        }
    })
}

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        let message = err.to_string();
        match err {
            Error::Shape(_) | Error::Value(_) => PyValueError::new_err(message),
            Error::Kind(_) => PyTypeError::new_err(message),
            Error::Checkpoint(_) => lverse_exception("CheckpointError", message),
            Error::Image(_) => lverse_exception("ImageError", message),
            Error::NotFound(_) => PyFileNotFoundError::new_err(message),
            Error::Io(_) => PyOSError::new_err(message),
            Error::Memory(_) => PyMemoryError::new_err(message),
            Error::Torch(_) | Error::Callback(_) => PyRuntimeError::new_err(message),
        }
    }
}
