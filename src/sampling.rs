//! Turning one step's logits into tokens: legal-range restriction, then temperature,
//! top-k and top-p (in that order when combined), then greedy or a seeded draw.
//! Draws use ChaCha8 on the host so a seed gives the same tokens on any device for the
//! same logits.

use crate::error::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub greedy: bool,
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    /// Legal token ids: the union of these [lo, hi) ranges (all ids when empty);
    /// everything else gets probability zero. A caption, for instance, may use the text
    /// ids and the end-of-caption token, which are not adjacent in the vocabulary.
    pub token_ranges: Vec<(i64, i64)>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            greedy: false,
            temperature: 1.0,
            top_k: None,
            top_p: None,
            token_ranges: Vec::new(),
        }
    }
}

impl Sampling {
    pub fn validate(&self, vocab: i64) -> Result<()> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(Error::Value(format!(
                "temperature must be > 0, got {}",
                self.temperature
            )));
        }
        if self.top_k == Some(0) {
            return Err(Error::Value("top_k must be >= 1, got 0".into()));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(Error::Value(format!("top_p must be in (0, 1], got {p}")));
            }
        }
        for &(lo, hi) in &self.token_ranges {
            if lo < 0 || hi > vocab || lo >= hi {
                return Err(Error::Value(format!(
                    "token_range must satisfy 0 <= lo < hi <= {vocab}, got ({lo}, {hi})"
                )));
            }
        }
        Ok(())
    }

    /// Which ids of a vocabulary of `vocab` are legal.
    pub fn legal_mask(&self, vocab: usize) -> Vec<bool> {
        if self.token_ranges.is_empty() {
            return vec![true; vocab];
        }
        let mut mask = vec![false; vocab];
        for &(lo, hi) in &self.token_ranges {
            mask[lo as usize..hi as usize]
                .iter_mut()
                .for_each(|m| *m = true);
        }
        mask
    }

    /// Probabilities over the vocabulary after the legal mask, temperature, top-k and
    /// top-p (zero for every id that is cut).
    pub fn distribution(&self, row: &[f32], legal: &[bool]) -> Vec<f64> {
        let scaled: Vec<f64> = row.iter().map(|&l| l as f64 / self.temperature).collect();
        let mut keep = legal.to_vec();
        if let Some(k) = self.top_k {
            if k < keep.iter().filter(|&&k| k).count() {
                let mut sorted: Vec<f64> = scaled
                    .iter()
                    .zip(&keep)
                    .filter(|(_, &k)| k)
                    .map(|(&l, _)| l)
                    .collect();
                sorted.sort_by(|a, b| b.total_cmp(a));
                let cutoff = sorted[k - 1];
                // minGPT keeps every logit equal to the k-th largest.
                keep.iter_mut()
                    .zip(&scaled)
                    .for_each(|(kp, &l)| *kp &= l >= cutoff);
            }
        }
        let max = scaled
            .iter()
            .zip(&keep)
            .filter(|(_, &k)| k)
            .map(|(&l, _)| l)
            .fold(f64::NEG_INFINITY, f64::max);
        let mut probs: Vec<f64> = scaled
            .iter()
            .zip(&keep)
            .map(|(&l, &k)| {
                if k && l.is_finite() {
                    (l - max).exp()
                } else {
                    0.0
                }
            })
            .collect();
        normalise(&mut probs);
        if let Some(p) = self.top_p {
            let mut order: Vec<usize> = (0..probs.len()).collect();
            order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
            // Keep the smallest prefix of the sorted tokens whose mass reaches p.
            let mut mass = 0.0;
            let mut cut = order.len();
            for (rank, &i) in order.iter().enumerate() {
                mass += probs[i];
                if mass >= p {
                    cut = rank + 1;
                    break;
                }
            }
            for &i in &order[cut..] {
                probs[i] = 0.0;
            }
            normalise(&mut probs);
        }
        probs
    }

    /// One token for each row of a (rows x vocab) logit matrix.
    pub fn pick(&self, logits: &[f32], vocab: usize, rng: &mut ChaCha8Rng) -> Vec<i64> {
        let legal = self.legal_mask(vocab);
        logits
            .chunks(vocab)
            .map(|row| {
                if self.greedy {
                    return argmax(row, &legal) as i64;
                }
                let probs = self.distribution(row, &legal);
                let u: f64 = rng.random();
                let mut acc = 0.0;
                let mut chosen = probs.iter().rposition(|&p| p > 0.0).unwrap_or(0);
                for (i, &p) in probs.iter().enumerate() {
                    acc += p;
                    if u < acc && p > 0.0 {
                        chosen = i;
                        break;
                    }
                }
                chosen as i64
            })
            .collect()
    }
}

fn normalise(probs: &mut [f64]) {
    let total: f64 = probs.iter().sum();
    if total > 0.0 {
        probs.iter_mut().for_each(|p| *p /= total);
    }
}

/// First legal index of the maximum (ties go to the lowest id, as torch.argmax).
pub fn argmax(row: &[f32], legal: &[bool]) -> usize {
    let mut best: Option<usize> = None;
    for (i, &v) in row.iter().enumerate() {
        if !legal[i] {
            continue;
        }
        match best {
            Some(b) if !(v > row[b] || (row[b].is_nan() && !v.is_nan())) => {}
            _ => best = Some(i),
        }
    }
    best.unwrap_or(0)
}

pub fn rng(seed: Option<u64>) -> ChaCha8Rng {
    match seed {
        Some(seed) => ChaCha8Rng::seed_from_u64(seed),
        None => ChaCha8Rng::from_os_rng(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_ties_and_top_p_keeps_the_smallest_prefix() {
        let s = Sampling {
            top_k: Some(2),
            ..Default::default()
        };
        let p = s.distribution(&[1.0, 3.0, 3.0, 0.0], &[true; 4]);
        assert_eq!(p[0], 0.0);
        assert!((p[1] - 0.5).abs() < 1e-12 && (p[2] - 0.5).abs() < 1e-12);
        let s = Sampling {
            top_p: Some(0.7),
            ..Default::default()
        };
        let logits = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let p = s.distribution(&logits, &[true; 3]);
        assert!((p[0] - 0.625).abs() < 1e-6 && (p[1] - 0.375).abs() < 1e-6 && p[2] == 0.0);
    }

    #[test]
    fn range_is_respected_and_seeds_repeat() {
        let s = Sampling {
            token_ranges: vec![(2, 4)],
            ..Default::default()
        };
        let logits = vec![9.0f32, 9.0, 0.0, 0.0, 9.0];
        let draw = |seed| s.pick(&logits.repeat(50), 5, &mut rng(Some(seed)));
        let a = draw(7);
        assert!(a.iter().all(|&t| (2..4).contains(&t)));
        assert_eq!(a, draw(7));
        assert_ne!(a, draw(8));
        let g = Sampling {
            greedy: true,
            token_ranges: vec![(1, 2), (3, 5)],
            ..Default::default()
        };
        assert_eq!(g.pick(&logits, 5, &mut rng(Some(0))), vec![1]);
        let g = Sampling {
            greedy: true,
            token_ranges: vec![(2, 3), (4, 5)],
            ..Default::default()
        };
        assert_eq!(g.pick(&logits, 5, &mut rng(Some(0))), vec![4]);
    }

    #[test]
    fn options_are_validated() {
        assert!(Sampling {
            temperature: 0.0,
            ..Default::default()
        }
        .validate(10)
        .is_err());
        assert!(Sampling {
            top_k: Some(0),
            ..Default::default()
        }
        .validate(10)
        .is_err());
        assert!(Sampling {
            top_p: Some(1.5),
            ..Default::default()
        }
        .validate(10)
        .is_err());
        assert!(Sampling {
            token_ranges: vec![(3, 11)],
            ..Default::default()
        }
        .validate(10)
        .is_err());
        assert!(Sampling::default().validate(10).is_ok());
    }
}
