//! `lverse.Tokenizer`: BiART's text tokenizer (CLIP's byte-level BPE, or one trained on
//! captions). Converts and checks arguments; the tokenizer itself is `crate::tokenizer`.

use crate::tokenizer::Tokenizer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyString};
use std::path::PathBuf;

/// A byte-level BPE text tokenizer with CLIP's pipeline and vocabulary layout.
///
/// Text is NFC-normalised, whitespace-collapsed and lowercased, split by CLIP's regex
/// (contractions, letter runs, single digits, other non-space runs), mapped to bytes and
/// merged by BPE with the end-of-word suffix ``</w>``. Ids: the 256 bytes, the 256 bytes
/// ending a word, one per merge, then ``<|startoftext|>`` and ``<|endoftext|>``.
///
/// Make one with ``Tokenizer.from_clip_bpe(path)`` (CLIP's own, 49408 tokens),
/// ``Tokenizer.train(texts, vocab_size)``, ``Tokenizer.from_file(path)`` or
/// ``Tokenizer.from_json(text)``. Tokenizers pickle (as their JSON).
#[pyclass(name = "Tokenizer", module = "lverse._native", frozen)]
pub struct PyTokenizer {
    inner: Tokenizer,
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|name| name.to_string())
        .unwrap_or_else(|_| "object".into())
}

/// The text of a `str` argument, or a TypeError naming `what` and the type given.
fn text_arg(value: &Bound<'_, PyAny>, what: &str) -> PyResult<String> {
    match value.downcast::<PyString>() {
        Ok(text) => Ok(text.to_cow()?.into_owned()),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{what} must be a str, got {}",
            type_name(value)
        ))),
    }
}

/// The texts of a list (any iterable but a str) of `str`.
fn texts_arg(texts: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    let not_a_list = || {
        PyTypeError::new_err(format!(
            "texts must be a list of str, got {}",
            type_name(texts)
        ))
    };
    if texts.is_instance_of::<PyString>() {
        return Err(not_a_list());
    }
    let items = texts.try_iter().map_err(|_| not_a_list())?;
    items
        .enumerate()
        .map(|(i, item)| text_arg(&item?, &format!("texts[{i}]")))
        .collect()
}

impl PyTokenizer {
    /// Token ids from a list, tuple, tensor or array of ints; an int too large for i64
    /// is reported as out of range.
    fn ids_arg(&self, ids: &Bound<'_, PyAny>) -> PyResult<Vec<i64>> {
        let listed;
        let ids = if !ids.is_instance_of::<PyString>() && ids.hasattr("tolist")? {
            listed = ids.call_method0("tolist")?;
            &listed
        } else {
            ids
        };
        let not_a_list =
            || PyTypeError::new_err(format!("ids must be a list of int, got {}", type_name(ids)));
        if ids.is_instance_of::<PyString>() {
            return Err(not_a_list());
        }
        let items = ids.try_iter().map_err(|_| not_a_list())?;
        items
            .enumerate()
            .map(|(i, item)| {
                let item = item?;
                match item.extract::<i64>() {
                    Ok(id) => Ok(id),
                    Err(_) if item.is_instance_of::<PyInt>() => {
                        Err(PyValueError::new_err(format!(
                            "token id {item} is out of range [0, {})",
                            self.inner.vocab_size()
                        )))
                    }
                    Err(_) => Err(PyTypeError::new_err(format!(
                        "ids[{i}] must be an int, got {}",
                        type_name(&item)
                    ))),
                }
            })
            .collect()
    }
}

#[pymethods]
impl PyTokenizer {
    /// Learns a BPE vocabulary of at most ``vocab_size`` tokens (special tokens included,
    /// at least 514) from ``texts``, merging only pairs seen at least ``min_frequency``
    /// times. The same texts always give the same tokenizer.
    #[staticmethod]
    #[pyo3(signature = (texts, vocab_size, *, min_frequency = 2))]
    fn train(
        py: Python<'_>,
        texts: &Bound<'_, PyAny>,
        vocab_size: i64,
        min_frequency: i64,
    ) -> PyResult<Self> {
        let texts = texts_arg(texts)?;
        let vocab_size = usize::try_from(vocab_size).map_err(|_| {
            PyValueError::new_err(format!("vocab_size must be positive, got {vocab_size}"))
        })?;
        let min_frequency = u64::try_from(min_frequency).map_err(|_| {
            PyValueError::new_err(format!("min_frequency must be >= 1, got {min_frequency}"))
        })?;
        let inner = py.allow_threads(|| Tokenizer::train(&texts, vocab_size, min_frequency))?;
        Ok(Self { inner })
    }

    /// CLIP's tokenizer, with CLIP's ids, from its vocabulary file
    /// ``bpe_simple_vocab_16e6.txt.gz`` (gzip-compressed or not).
    #[staticmethod]
    #[pyo3(signature = (path))]
    fn from_clip_bpe(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py.allow_threads(|| Tokenizer::from_clip_bpe(&path))?;
        Ok(Self { inner })
    }

    /// Loads a tokenizer.json file (as written by ``save``).
    #[staticmethod]
    #[pyo3(signature = (path))]
    fn from_file(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py.allow_threads(|| Tokenizer::from_file(&path))?;
        Ok(Self { inner })
    }

    /// A tokenizer from the text of a tokenizer.json (as returned by ``to_json``).
    #[staticmethod]
    #[pyo3(signature = (json))]
    fn from_json(py: Python<'_>, json: &Bound<'_, PyAny>) -> PyResult<Self> {
        let json = text_arg(json, "json")?;
        let inner = py.allow_threads(|| Tokenizer::from_json(&json))?;
        Ok(Self { inner })
    }

    /// Writes the tokenizer to ``path`` as tokenizer.json.
    #[pyo3(signature = (path))]
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.allow_threads(|| self.inner.save(&path))?;
        Ok(())
    }

    /// The tokenizer as tokenizer.json text (compact), e.g. to store in a checkpoint.
    #[pyo3(signature = ())]
    fn to_json(&self, py: Python<'_>) -> PyResult<String> {
        Ok(py.allow_threads(|| self.inner.to_json(false))?)
    }

    /// Token ids of ``text``; with ``add_special_tokens``, between ``<|startoftext|>``
    /// and ``<|endoftext|>``. Raises ValueError for empty or whitespace-only text.
    #[pyo3(signature = (text, add_special_tokens = false))]
    fn encode(
        &self,
        py: Python<'_>,
        text: &Bound<'_, PyAny>,
        add_special_tokens: bool,
    ) -> PyResult<Vec<u32>> {
        let text = text_arg(text, "text")?;
        Ok(py.allow_threads(|| self.inner.encode(&text, add_special_tokens))?)
    }

    /// ``encode`` of each text, in parallel.
    #[pyo3(signature = (texts, add_special_tokens = false))]
    fn encode_batch(
        &self,
        py: Python<'_>,
        texts: &Bound<'_, PyAny>,
        add_special_tokens: bool,
    ) -> PyResult<Vec<Vec<u32>>> {
        let texts = texts_arg(texts)?;
        Ok(py.allow_threads(|| self.inner.encode_batch(&texts, add_special_tokens))?)
    }

    /// The text of token ``ids`` (a list of int, or a 1-D tensor or array); special
    /// tokens are left out when ``skip_special_tokens``. Raises ValueError for an id
    /// outside ``[0, vocab_size)``.
    #[pyo3(signature = (ids, skip_special_tokens = true))]
    fn decode(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        skip_special_tokens: bool,
    ) -> PyResult<String> {
        let ids = self.ids_arg(ids)?;
        Ok(py.allow_threads(|| self.inner.decode(&ids, skip_special_tokens))?)
    }

    /// Number of tokens, special tokens included.
    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// The id of ``token`` (as spelt in the vocabulary, e.g. ``"cat</w>"``), or None.
    #[pyo3(signature = (token))]
    fn token_to_id(&self, token: &Bound<'_, PyAny>) -> PyResult<Option<u32>> {
        Ok(self.inner.token_to_id(&text_arg(token, "token")?))
    }

    /// The token with id ``id``, or None if there is none.
    #[pyo3(signature = (id))]
    fn id_to_token(&self, id: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
        if !id.is_instance_of::<PyInt>() && !id.hasattr("__index__")? {
            return Err(PyTypeError::new_err(format!(
                "id must be an int, got {}",
                type_name(id)
            )));
        }
        Ok(id
            .extract::<i64>()
            .ok()
            .and_then(|id| self.inner.id_to_token(id)))
    }

    fn __repr__(&self) -> String {
        format!("Tokenizer(vocab_size={})", self.inner.vocab_size())
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let from_json = slf.get_type().getattr("from_json")?;
        Ok((from_json, (slf.get().inner.to_json(false)?,)))
    }
}
