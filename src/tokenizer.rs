//! The text side of BiART: CLIP's byte-level BPE on Hugging Face's `tokenizers` crate.
//!
//! Every tokenizer made here has CLIP's layout: the 256 byte characters, the same 256 with
//! the end-of-word suffix `</w>`, one token per merge in merge order, then
//! `<|startoftext|>` and `<|endoftext|>`. Text is NFC-normalised, curly quotes straightened,
//! whitespace-collapsed and lowercased, split by CLIP's regex and mapped to bytes (see
//! `pipeline`); CLIP's other ftfy and HTML-entity repairs are not applied. The tokenizer is
//! either CLIP's own (`from_clip_bpe`), learnt from captions (`train`), or any
//! `tokenizer.json` the crate reads (`from_file`, `from_json`).

mod clip;
mod pipeline;

mod train;

use crate::error::{Error, Result};
use std::path::Path;

pub use pipeline::{END_OF_TEXT, START_OF_TEXT, WORD_SUFFIX};
pub use train::DEFAULT_MIN_FREQUENCY;

/// The smallest trainable vocabulary: the 512 byte tokens and the two special tokens.
pub const MIN_TRAINED_VOCAB: usize = 2 * 256 + 2;

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl Tokenizer {
    /// Learns BPE merges from `texts` until the vocabulary (special tokens included) holds
    /// `vocab_size` tokens or no pair occurs `min_frequency` times; the same input always
    /// gives the same tokenizer.
    pub fn train<S: AsRef<str> + Sync>(
        texts: &[S],
        vocab_size: usize,
        min_frequency: u64,
    ) -> Result<Self> {
        if vocab_size < MIN_TRAINED_VOCAB {
            return Err(Error::Value(format!(
                "vocab_size must be at least {MIN_TRAINED_VOCAB} (256 bytes, 256 word-final \
                 bytes and 2 special tokens), got {vocab_size}"
            )));
        }
        if min_frequency < 1 {
            return Err(Error::Value(format!(
                "min_frequency must be >= 1, got {min_frequency}"
            )));
        }
        let words = crate::pool::install(|| pipeline::count_words(texts))?;
        if words.is_empty() {
            let why = match texts.len() {
                0 => "the list of texts is empty".to_string(),
                n => format!("all {n} texts are empty"),
            };
            return Err(Error::Value(format!("no text to train on: {why}")));
        }
        let merges =
            crate::pool::install(|| train::learn_merges(&words, vocab_size - 2, min_frequency));
        Ok(Self {
            inner: pipeline::build(&merges)?,
        })
    }

    /// CLIP's tokenizer from its vocabulary file `bpe_simple_vocab_16e6.txt(.gz)`, with
    /// CLIP's ids.
    pub fn from_clip_bpe(path: &Path) -> Result<Self> {
        let merges = clip::read_merges(path)?;
        Ok(Self {
            inner: pipeline::build(&merges)?,
        })
    }

    /// Any tokenizer.json that the `tokenizers` crate reads.
    pub fn from_file(path: &Path) -> Result<Self> {
        let shown = path.display();
        if !path.exists() {
            return Err(Error::NotFound(format!(
                "tokenizer file not found: {shown}"
            )));
        }
        if path.is_dir() {
            return Err(Error::Value(format!(
                "{shown} is a directory, not a tokenizer.json file"
            )));
        }
        let bytes = std::fs::read(path)
            .map_err(|err| Error::Io(format!("cannot read tokenizer file {shown}: {err}")))?;
        let json = std::str::from_utf8(&bytes).map_err(|_| {
            Error::Value(format!(
                "{shown} is not a tokenizer.json file: not UTF-8 text"
            ))
        })?;
        Self::parse(json)
            .map_err(|why| Error::Value(format!("{shown} is not a tokenizer.json file: {why}")))
    }

    /// A tokenizer from the text of a tokenizer.json (as made by `to_json`).
    pub fn from_json(json: &str) -> Result<Self> {
        Self::parse(json).map_err(|why| Error::Value(format!("not the JSON of a tokenizer: {why}")))
    }

    fn parse(json: &str) -> std::result::Result<Self, String> {
        // JSON syntax first, on its own: tokenizers panics on some syntax errors met in
        // the middle of its own parse. What is left of its panics is contained.
        let value: serde_json::Value = serde_json::from_str(json).map_err(|err| err.to_string())?;
        let inner =
            crate::contained::contained(|| serde_json::from_value::<tokenizers::Tokenizer>(value))
                .map_err(|panic| format!("the tokenizers library failed on it ({panic})"))?
                .map_err(|err| err.to_string())?;
        Ok(Self { inner })
    }

    /// The tokenizer.json text; compact unless `pretty`.
    pub fn to_json(&self, pretty: bool) -> Result<String> {
        self.inner
            .to_string(pretty)
            .map_err(|err| Error::Value(format!("cannot serialise the tokenizer: {err}")))
    }

    /// Writes tokenizer.json (pretty-printed) to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self.to_json(true)?;
        std::fs::write(path, json).map_err(|err| {
            let message = format!("cannot write tokenizer file {}: {err}", path.display());
            match err.kind() {
                std::io::ErrorKind::NotFound => Error::NotFound(message),
                _ => Error::Io(message),
            }
        })
    }

    /// Token ids of `text`; with `add_special_tokens`, between `<|startoftext|>` and
    /// `<|endoftext|>`.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        if text.trim().is_empty() {
            return Err(Error::Value("text is empty".into()));
        }
        self.encode_unchecked(text, add_special_tokens)
    }

    fn encode_unchecked(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|err| Error::Value(format!("cannot encode {text:?}: {err}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// `encode` of each text, in parallel.
    pub fn encode_batch<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        add_special_tokens: bool,
    ) -> Result<Vec<Vec<u32>>> {
        if let Some(i) = texts.iter().position(|t| t.as_ref().trim().is_empty()) {
            return Err(Error::Value(format!("text is empty: texts[{i}]")));
        }
        crate::pool::install(|| {
            use rayon::prelude::*;
            texts
                .par_iter()
                .map(|text| self.encode_unchecked(text.as_ref(), add_special_tokens))
                .collect()
        })
    }

    /// The text of `ids`; special tokens are left out when `skip_special_tokens`.
    pub fn decode(&self, ids: &[i64], skip_special_tokens: bool) -> Result<String> {
        let size = self.vocab_size();
        let ids = ids
            .iter()
            .map(|&id| match u32::try_from(id) {
                Ok(id32) if (id32 as usize) < size => match self.inner.id_to_token(id32) {
                    Some(_) => Ok(id32),
                    None => Err(Error::Value(format!(
                        "token id {id} has no token in this vocabulary of {size}"
                    ))),
                },
                _ => Err(Error::Value(format!(
                    "token id {id} is out of range [0, {size})"
                ))),
            })
            .collect::<Result<Vec<u32>>>()?;
        self.inner
            .decode(&ids, skip_special_tokens)
            .map_err(|err| Error::Value(format!("cannot decode: {err}")))
    }

    /// Number of tokens, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: i64) -> Option<String> {
        u32::try_from(id)
            .ok()
            .and_then(|id| self.inner.id_to_token(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTIONS: &[&str] = &[
        "A red circle on a blue background",
        "a small red square next to a green circle",
        "Two blue triangles   and a red circle",
        "a green square above a blue circle",
        "the red square is left of the green triangle",
        "A photo of a cat sitting on a mat",
        "a photo of a dog",
        "a drawing of two cats and one dog",
    ];

    fn trained(vocab_size: usize) -> Tokenizer {
        Tokenizer::train(CAPTIONS, vocab_size, 2).unwrap()
    }

    #[test]
    fn layout_matches_clip() {
        let tok = trained(600);
        assert_eq!(tok.token_to_id("!"), Some(0));
        assert_eq!(tok.token_to_id("a</w>"), Some(256 + 64));
        let size = tok.vocab_size();
        assert!(size > MIN_TRAINED_VOCAB && size <= 600, "{size}");
        assert_eq!(tok.token_to_id(START_OF_TEXT), Some(size as u32 - 2));
        assert_eq!(tok.token_to_id(END_OF_TEXT), Some(size as u32 - 1));
        // The most frequent word ends up one token.
        assert_eq!(tok.encode("a", false).unwrap(), vec![320]);
        assert_eq!(tok.id_to_token(-1), None);
        assert_eq!(tok.id_to_token(size as i64), None);
    }

    #[test]
    fn training_is_deterministic() {
        let a = trained(560).to_json(false).unwrap();
        for _ in 0..3 {
            assert_eq!(trained(560).to_json(false).unwrap(), a);
        }
    }

    #[test]
    fn vocab_size_bounds_the_vocabulary() {
        assert_eq!(trained(MIN_TRAINED_VOCAB).vocab_size(), MIN_TRAINED_VOCAB);
        assert_eq!(trained(520).vocab_size(), 520);
        let err = Tokenizer::train(CAPTIONS, 100, 2).err().unwrap();
        assert!(matches!(err, Error::Value(_)));
        assert!(err.to_string().contains("at least 514"), "{err}");
        let err = Tokenizer::train(&["  ", ""], 600, 2).err().unwrap();
        assert!(err.to_string().contains("no text to train on"), "{err}");
    }

    #[test]
    fn encode_decode_round_trip() {
        let tok = trained(700);
        // Decoding puts a space after every pre-tokenizer piece (CLIP's behaviour).
        for (text, expected) in [
            ("A Red  circle", "a red circle"),
            (
                "a purple hexagon, zebra-striped! 42 times",
                "a purple hexagon , zebra - striped ! 4 2 times",
            ),
            ("naïve café — 東京 🐱", "naïve café — 東京 🐱"),
            ("it's the cat's mat", "it 's the cat 's mat"),
        ] {
            let ids: Vec<i64> = tok
                .encode(text, false)
                .unwrap()
                .into_iter()
                .map(i64::from)
                .collect();
            assert_eq!(tok.decode(&ids, true).unwrap(), expected, "{text}");
        }
        let ids: Vec<i64> = tok
            .encode("a red circle", true)
            .unwrap()
            .into_iter()
            .map(i64::from)
            .collect();
        let size = tok.vocab_size() as i64;
        assert_eq!(ids.first(), Some(&(size - 2)));
        assert_eq!(ids.last(), Some(&(size - 1)));
        assert_eq!(tok.decode(&ids, true).unwrap(), "a red circle");
        assert_eq!(
            tok.decode(&ids, false).unwrap(),
            "<|startoftext|>a red circle <|endoftext|>"
        );
        assert_eq!(tok.decode(&[], true).unwrap(), "");
    }

    #[test]
    fn json_round_trip() {
        let tok = trained(600);
        let json = tok.to_json(false).unwrap();
        let again = Tokenizer::from_json(&json).unwrap();
        assert_eq!(again.to_json(false).unwrap(), json);
        let text = "a small green triangle";
        assert_eq!(
            again.encode(text, true).unwrap(),
            tok.encode(text, true).unwrap()
        );
        assert!(matches!(
            Tokenizer::from_json("{\"not\": 1}"),
            Err(Error::Value(_))
        ));
    }

    #[test]
    fn bad_input_is_an_error() {
        let tok = trained(600);
        assert_eq!(
            tok.encode(" \t\n", false).unwrap_err().to_string(),
            "text is empty"
        );
        let err = tok.decode(&[1, 600], true).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("token id 600 is out of range [0, {})", tok.vocab_size())
        );
        assert!(tok
            .decode(&[-3], true)
            .unwrap_err()
            .to_string()
            .contains("-3"));
        let err = tok
            .encode_batch(&["a cat", ""], false)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "text is empty: texts[1]");
        assert!(matches!(
            Tokenizer::from_file(Path::new("/nonexistent/tokenizer.json")),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn batch_matches_single() {
        let tok = trained(650);
        let batch = tok.encode_batch(CAPTIONS, true).unwrap();
        for (text, ids) in CAPTIONS.iter().zip(&batch) {
            assert_eq!(&tok.encode(text, true).unwrap(), ids);
        }
    }
}
