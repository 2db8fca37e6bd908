//! CLIP's text pipeline as `tokenizers` components, and the vocabulary layout shared by
//! CLIP's tokenizer and trained ones.

use crate::error::{Error, Result};
use std::collections::HashMap;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::replace::{Replace, ReplacePattern};
use tokenizers::normalizers::strip::Strip;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::normalizers::utils::{Lowercase, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString,
    PreTokenizer, SplitDelimiterBehavior,
};

pub const START_OF_TEXT: &str = "<|startoftext|>";
pub const END_OF_TEXT: &str = "<|endoftext|>";
/// Marks the last piece of a word, so that decoding knows where the spaces were.
pub const WORD_SUFFIX: &str = "</w>";

/// CLIP's pre-tokenizer pattern (`simple_tokenizer.py`) without the special tokens, which
/// the added vocabulary splits off first: contractions, letter runs, single digits, runs of
/// anything else that is not whitespace.
const CLIP_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

fn component_error(what: &str) -> impl Fn(tokenizers::Error) -> Error + '_ {
    move |err| Error::Value(format!("cannot build the tokenizer's {what}: {err}"))
}

/// The characters that stand for the bytes 0..=255, in CLIP's (and GPT-2's)
/// `bytes_to_unicode` order: the printable bytes first, then the others shifted past 255.
pub(super) fn byte_alphabet() -> Vec<char> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut alphabet: Vec<char> = (0..256u32)
        .filter(|&b| printable(b))
        .filter_map(char::from_u32)
        .collect();
    let others = (0..256u32).filter(|&b| !printable(b));
    alphabet.extend(
        others
            .enumerate()
            .filter_map(|(n, _)| char::from_u32(256 + n as u32)),
    );
    alphabet
}

/// The 512 first tokens: each byte character, then each with the word suffix.
pub(super) fn base_tokens() -> Vec<String> {
    let alphabet = byte_alphabet();
    let plain = alphabet.iter().map(|c| c.to_string());
    let final_ = alphabet.iter().map(|c| format!("{c}{WORD_SUFFIX}"));
    plain.chain(final_).collect()
}

fn normalizer() -> Result<NormalizerSequence> {
    let replace = |pattern: &str, by: &str| {
        Replace::new(ReplacePattern::Regex(pattern.into()), by)
            .map_err(component_error("normalizer"))
    };
    // CLIP cleans text with ftfy, which among other things straightens curly quotes, so
    // that "it’s" splits like "it's".
    Ok(NormalizerSequence::new(vec![
        NFC.into(),
        replace("[\u{2bc}\u{2018}-\u{201b}]", "'")?.into(),
        replace("[\u{201c}-\u{201f}]", "\"")?.into(),
        replace(r"\s+", " ")?.into(),
        Strip::new(true, true).into(),
        Lowercase.into(),
    ]))
}

fn pre_tokenizer() -> Result<PreTokenizerSequence> {
    // Inverted: the pattern's matches are the pieces, the whitespace between is dropped.
    let split = Split::new(
        SplitPattern::Regex(CLIP_PATTERN.into()),
        SplitDelimiterBehavior::Removed,
        true,
    )
    .map_err(component_error("pre-tokenizer"))?;
    let bytes = ByteLevel::new(false, false, false);
    Ok(PreTokenizerSequence::new(vec![split.into(), bytes.into()]))
}

fn decoder() -> Result<DecoderSequence> {
    // Bytes back to text, then each word suffix to a space, but none after the last word.
    let last_suffix = Replace::new(ReplacePattern::Regex(format!("{WORD_SUFFIX}$")), "")
        .map_err(component_error("decoder"))?;
    let suffix = Replace::new(ReplacePattern::String(WORD_SUFFIX.into()), " ")
        .map_err(component_error("decoder"))?;
    Ok(DecoderSequence::new(vec![
        ByteLevel::new(false, false, false).into(),
        last_suffix.into(),
        suffix.into(),
    ]))
}

/// A tokenizer with CLIP's pipeline whose vocabulary is the base tokens, one token per
/// merge (in order; a merge whose result already exists adds none), then the two special
/// tokens.
pub(super) fn build(merges: &[(String, String)]) -> Result<tokenizers::Tokenizer> {
    let mut tokens = base_tokens();
    let mut vocab: Vocab = tokens.iter().cloned().zip(0u32..).collect();
    for (a, b) in merges {
        let joined = format!("{a}{b}");
        if !vocab.contains_key(&joined) {
            vocab.insert(joined.clone(), tokens.len() as u32);
            tokens.push(joined);
        }
    }
    let start = tokens.len() as u32;
    let end = start + 1;
    vocab.insert(START_OF_TEXT.into(), start);
    vocab.insert(END_OF_TEXT.into(), end);

    let model = BPE::builder()
        .vocab_and_merges(vocab, merges.to_vec())
        .end_of_word_suffix(WORD_SUFFIX.into())
        .build()
        .map_err(component_error("BPE model"))?;
    let template = format!("{START_OF_TEXT} $A {END_OF_TEXT}");
    let pair_template = format!("{START_OF_TEXT} $A {END_OF_TEXT} $B:1 {END_OF_TEXT}:1");
    let post_processor = TemplateProcessing::builder()
        .try_single(template.as_str())
        .and_then(|b| b.try_pair(pair_template.as_str()))
        .map_err(|err| Error::Value(format!("cannot build the post-processor: {err}")))?
        .special_tokens(vec![(START_OF_TEXT, start), (END_OF_TEXT, end)])
        .build()
        .map_err(|err| Error::Value(format!("cannot build the post-processor: {err}")))?;

    let mut tokenizer = tokenizers::Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(normalizer()?))
        .with_pre_tokenizer(Some(pre_tokenizer()?))
        .with_post_processor(Some(post_processor))
        .with_decoder(Some(decoder()?));
    tokenizer.add_special_tokens(&[
        AddedToken::from(START_OF_TEXT, true),
        AddedToken::from(END_OF_TEXT, true),
    ]);
    Ok(tokenizer)
}

/// How often each pre-tokenized word (in byte characters) occurs in `texts`, sorted by
/// word so that training never depends on hashing or thread order.
pub(super) fn count_words<S: AsRef<str> + Sync>(texts: &[S]) -> Result<Vec<(String, u64)>> {
    use rayon::prelude::*;
    let normalizer = normalizer()?;
    let pre_tokenizer = pre_tokenizer()?;
    let split = |text: &str| -> Result<Vec<String>> {
        let mut normalized = NormalizedString::from(text);
        normalizer
            .normalize(&mut normalized)
            .map_err(|err| Error::Value(format!("cannot normalise {text:?}: {err}")))?;
        let mut pieces = PreTokenizedString::from(normalized);
        pre_tokenizer
            .pre_tokenize(&mut pieces)
            .map_err(|err| Error::Value(format!("cannot pre-tokenize {text:?}: {err}")))?;
        Ok(pieces
            .get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(piece, _, _)| piece.to_owned())
            .collect())
    };
    let counts = texts
        .par_iter()
        .map(|text| split(text.as_ref()))
        .try_fold(HashMap::new, |mut counts, words| {
            for word in words? {
                *counts.entry(word).or_insert(0u64) += 1;
            }
            Ok::<_, Error>(counts)
        })
        .try_reduce(HashMap::new, |mut a, b| {
            for (word, n) in b {
                *a.entry(word).or_insert(0) += n;
            }
            Ok(a)
        })?;
    let mut words: Vec<(String, u64)> = counts.into_iter().collect();
    words.sort_unstable();
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_is_clips() {
        let alphabet = byte_alphabet();
        assert_eq!(alphabet.len(), 256);
        assert_eq!(alphabet[0], '!');
        assert_eq!(alphabet[64], 'a');
        // Byte 0 is the first non-printable one, so it comes right after the printable
        // 188 and stands for U+0100; the space (32) is U+0120, 'Ġ'.
        assert_eq!(alphabet[188], '\u{100}');
        assert_eq!(alphabet[188 + 32], 'Ġ');
        let mut unique = alphabet.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 256);
    }

    #[test]
    fn words_are_counted_after_normalisation() {
        let words = count_words(&["A  cat's hat", "a\tCAT!!"]).unwrap();
        let expected: Vec<(String, u64)> = [("!!", 1), ("'s", 1), ("a", 2), ("cat", 2), ("hat", 1)]
            .into_iter()
            .map(|(w, n)| (w.to_string(), n))
            .collect();
        assert_eq!(words, expected);
    }
}
