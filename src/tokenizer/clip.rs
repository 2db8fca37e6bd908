//! CLIP's BPE vocabulary file, `bpe_simple_vocab_16e6.txt.gz`: a header line, then one
//! merge per line ("i n"). CLIP uses the first 49152 - 256 - 2 merges, which with the 512
//! byte tokens and the two special tokens make its 49408 ids.

use crate::error::{Error, Result};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;

/// The number of merges CLIP reads from the file.
pub(super) const CLIP_MERGES: usize = 49152 - 256 - 2;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// CLIP's merges from its vocabulary file, gzip-compressed or not.
pub(super) fn read_merges(path: &Path) -> Result<Vec<(String, String)>> {
    let shown = path.display();
    if !path.exists() {
        return Err(Error::NotFound(format!(
            "CLIP vocabulary file not found: {shown}"
        )));
    }
    if path.is_dir() {
        return Err(Error::Value(format!(
            "{shown} is a directory, not a CLIP vocabulary file"
        )));
    }
    let raw = std::fs::read(path)
        .map_err(|err| Error::Io(format!("cannot read CLIP vocabulary file {shown}: {err}")))?;
    let not_clip = |why: String| {
        Error::Value(format!(
            "{shown} is not a CLIP BPE vocabulary file (bpe_simple_vocab_16e6.txt.gz): {why}"
        ))
    };
    let bytes = if raw.starts_with(&GZIP_MAGIC) {
        let mut text = Vec::new();
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut text)
            .map_err(|err| not_clip(format!("bad gzip data: {err}")))?;
        text
    } else {
        raw
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| not_clip("not UTF-8 text".into()))?;
    parse_merges(text).map_err(not_clip)
}

fn parse_merges(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    if !header.contains("#version") {
        let head: String = header.chars().take(40).collect();
        return Err(format!(
            "the first line should be a '#version' header, found {head:?}"
        ));
    }
    let mut merges = Vec::with_capacity(CLIP_MERGES);
    for (number, line) in lines.take(CLIP_MERGES).enumerate() {
        let mut parts = line.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => {
                merges.push((a.to_owned(), b.to_owned()));
            }
            _ => {
                let shown: String = line.chars().take(40).collect();
                return Err(format!(
                    "line {} should be two symbols separated by a space, found {shown:?}",
                    number + 2
                ));
            }
        }
    }
    if merges.len() < CLIP_MERGES {
        return Err(format!(
            "it has {} merges, CLIP needs {CLIP_MERGES}",
            merges.len()
        ));
    }
    Ok(merges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_malformed_files_are_rejected() {
        let err = parse_merges("hello\ni n").unwrap_err();
        assert!(err.contains("'#version' header"), "{err}");
        let err = parse_merges("#version: 0.2\ni n\r\nt h\n").unwrap_err();
        assert!(err.contains("it has 2 merges"), "{err}");
        let err = parse_merges("#version: 0.2\ni n\nthree parts here").unwrap_err();
        assert!(err.contains("line 3"), "{err}");
    }

    /// CLIP's file where the Python tests cache it, if they have run.
    #[test]
    fn clip_ids() {
        let Some(home) = std::env::var_os("HOME") else {
            return;
        };
        let path = Path::new(&home).join(".cache/lverse/clip/bpe_simple_vocab_16e6.txt.gz");
        if !path.exists() {
            eprintln!(
                "skipped: {} not found (run tests/test_tokenizer.py)",
                path.display()
            );
            return;
        }
        let tok = crate::tokenizer::Tokenizer::from_clip_bpe(&path).unwrap();
        assert_eq!(tok.vocab_size(), 49408);
        assert_eq!(
            tok.encode("a photo of a cat", true).unwrap(),
            [49406, 320, 1125, 539, 320, 2368, 49407]
        );
        let ids: Vec<i64> = tok
            .encode("An Armchair in the shape of an avocado", false)
            .unwrap()
            .into_iter()
            .map(i64::from)
            .collect();
        assert_eq!(
            tok.decode(&ids, true).unwrap(),
            "an armchair in the shape of an avocado"
        );
    }
}
