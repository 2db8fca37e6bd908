//! Learning BPE merges from word counts.
//!
//! A small trainer of our own rather than `tokenizers`' `BpeTrainer`: that one numbers
//! word-final symbols in hash-map order, which differs between processes and decides ties,
//! so the same corpus can give different merges. Here every symbol has a fixed id (the
//! CLIP layout of `pipeline::base_tokens`, then merges in order), words are sorted, and
//! ties between equally frequent pairs go to the smaller pair of ids.

use super::pipeline::base_tokens;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

/// Pairs seen fewer times than this are not merged by default: a one-off word is not worth
/// a token.
pub const DEFAULT_MIN_FREQUENCY: u64 = 2;

type Pair = (u32, u32);

struct Corpus {
    /// Each distinct word as symbol ids.
    words: Vec<Vec<u32>>,
    /// How often each word occurs.
    counts: Vec<u64>,
    /// How often each adjacent pair of symbols occurs, over all words.
    pair_counts: HashMap<Pair, u64>,
    /// The words in which each pair may occur (a superset: merging does not prune it).
    pair_words: HashMap<Pair, Vec<usize>>,
    /// Most frequent pair first; entries whose count is out of date are skipped.
    queue: BinaryHeap<(u64, Reverse<Pair>)>,
}

impl Corpus {
    fn new(words: &[(String, u64)], ids: &HashMap<String, u32>) -> Self {
        let mut corpus = Corpus {
            words: Vec::with_capacity(words.len()),
            counts: Vec::with_capacity(words.len()),
            pair_counts: HashMap::new(),
            pair_words: HashMap::new(),
            queue: BinaryHeap::new(),
        };
        let mut changed = HashSet::new();
        for (index, (word, count)) in words.iter().enumerate() {
            let chars: Vec<char> = word.chars().collect();
            let symbols: Vec<u32> = chars
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let symbol = if i + 1 == chars.len() {
                        format!("{c}{}", super::WORD_SUFFIX)
                    } else {
                        c.to_string()
                    };
                    ids.get(&symbol).copied()
                })
                .collect();
            for pair in symbols.windows(2).map(|w| (w[0], w[1])) {
                *corpus.pair_counts.entry(pair).or_insert(0) += count;
                corpus.pair_words.entry(pair).or_default().push(index);
                changed.insert(pair);
            }
            corpus.words.push(symbols);
            corpus.counts.push(*count);
        }
        corpus.requeue(changed);
        corpus
    }

    fn requeue(&mut self, pairs: HashSet<Pair>) {
        for pair in pairs {
            if let Some(&count) = self.pair_counts.get(&pair) {
                self.queue.push((count, Reverse(pair)));
            }
        }
    }

    /// The most frequent pair, with its count.
    fn pop_best(&mut self) -> Option<(Pair, u64)> {
        while let Some((count, Reverse(pair))) = self.queue.pop() {
            if self.pair_counts.get(&pair) == Some(&count) {
                return Some((pair, count));
            }
        }
        None
    }

    /// Replaces every occurrence of `pair` by `merged`, keeping the pair statistics.
    fn merge(&mut self, pair: Pair, merged: u32) {
        let mut indices = self.pair_words.remove(&pair).unwrap_or_default();
        indices.sort_unstable();
        indices.dedup();
        let mut deltas: HashMap<Pair, i64> = HashMap::new();
        for index in indices {
            let old = &self.words[index];
            if !old.windows(2).any(|w| (w[0], w[1]) == pair) {
                continue;
            }
            let mut new = Vec::with_capacity(old.len());
            let mut i = 0;
            while i < old.len() {
                if i + 1 < old.len() && (old[i], old[i + 1]) == pair {
                    new.push(merged);
                    i += 2;
                } else {
                    new.push(old[i]);
                    i += 1;
                }
            }
            let count = self.counts[index] as i64;
            for w in old.windows(2) {
                *deltas.entry((w[0], w[1])).or_insert(0) -= count;
            }
            for w in new.windows(2) {
                let new_pair = (w[0], w[1]);
                *deltas.entry(new_pair).or_insert(0) += count;
                if w[0] == merged || w[1] == merged {
                    self.pair_words.entry(new_pair).or_default().push(index);
                }
            }
            self.words[index] = new;
        }
        let mut changed = HashSet::new();
        for (pair, delta) in deltas {
            if delta == 0 {
                continue;
            }
            let count = self.pair_counts.get(&pair).copied().unwrap_or(0) as i64 + delta;
            if count > 0 {
                self.pair_counts.insert(pair, count as u64);
                changed.insert(pair);
            } else {
                self.pair_counts.remove(&pair);
                self.pair_words.remove(&pair);
            }
        }
        self.requeue(changed);
    }
}

/// The merges, in order, that grow the base vocabulary to at most `max_tokens` tokens
/// (special tokens not counted), merging only pairs seen at least `min_frequency` times.
/// `words` must be sorted (as `pipeline::count_words` returns them).
pub(super) fn learn_merges(
    words: &[(String, u64)],
    max_tokens: usize,
    min_frequency: u64,
) -> Vec<(String, String)> {
    let mut tokens = base_tokens();
    let mut ids: HashMap<String, u32> = tokens.iter().cloned().zip(0u32..).collect();
    let mut corpus = Corpus::new(words, &ids);
    let mut merged_pairs = HashSet::new();
    let mut merges = Vec::new();
    while tokens.len() < max_tokens {
        let Some((pair, count)) = corpus.pop_best() else {
            break;
        };
        if count < min_frequency {
            break;
        }
        let joined = format!("{}{}", tokens[pair.0 as usize], tokens[pair.1 as usize]);
        let merged = *ids.entry(joined.clone()).or_insert_with(|| {
            tokens.push(joined);
            tokens.len() as u32 - 1
        });
        // A pair merged before can form again around a token that a second pair also
        // makes; the earlier merge already covers it when encoding.
        if merged_pairs.insert(pair) {
            let (a, b) = (&tokens[pair.0 as usize], &tokens[pair.1 as usize]);
            merges.push((a.clone(), b.clone()));
        }
        corpus.merge(pair, merged);
    }
    merges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[(&str, u64)]) -> Vec<(String, u64)> {
        let mut words: Vec<(String, u64)> = list.iter().map(|(w, n)| (w.to_string(), *n)).collect();
        words.sort_unstable();
        words
    }

    fn pairs(merges: &[(String, String)]) -> Vec<(&str, &str)> {
        merges
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect()
    }

    #[test]
    fn most_frequent_pair_first() {
        let corpus = words(&[
            ("hug", 10),
            ("pug", 5),
            ("pun", 12),
            ("bun", 4),
            ("hugs", 5),
        ]);
        // "p u" occurs 17 times; after it, "h u" 15 and "pu n</w>" 12 lead.
        let merges = learn_merges(&corpus, 512 + 3, 1);
        assert_eq!(pairs(&merges), [("p", "u"), ("h", "u"), ("pu", "n</w>")]);
    }

    #[test]
    fn ties_go_to_the_smaller_ids() {
        let corpus = words(&[("cd", 2), ("ab", 2)]);
        let merges = learn_merges(&corpus, 1000, 1);
        assert_eq!(pairs(&merges), [("a", "b</w>"), ("c", "d</w>")]);
    }

    #[test]
    fn min_frequency_stops_training() {
        let corpus = words(&[("ab", 3), ("cd", 1)]);
        let merges = learn_merges(&corpus, 1000, 2);
        assert_eq!(merges, [("a".to_string(), "b</w>".to_string())]);
    }

    #[test]
    fn repeated_symbols_merge_left_to_right() {
        let corpus = words(&[("aaa", 4)]);
        let merges = learn_merges(&corpus, 1000, 1);
        assert_eq!(pairs(&merges), [("a", "a"), ("aa", "a</w>")]);
    }
}
