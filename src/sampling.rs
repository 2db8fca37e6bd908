//! Turning one step's logits into tokens: legal-range restriction, then temperature,
//! top-k and top-p (in that order when combined), then greedy or a seeded draw.
//! The distribution is computed with tensor ops where the logits live; only the draw runs
//! on the host, with ChaCha8, so a seed gives the same tokens for the same probabilities.

use crate::error::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

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
    fn legal_ids(&self, vocab: usize) -> Vec<bool> {
        if self.token_ranges.is_empty() {
            return vec![true; vocab];
        }
        let mut legal = vec![false; vocab];
        for &(lo, hi) in &self.token_ranges {
            legal[lo as usize..hi as usize]
                .iter_mut()
                .for_each(|m| *m = true);
        }
        legal
    }

    /// An additive mask (V,): 0 on legal ids, -inf elsewhere, for logits of `kind`.
    pub fn mask(&self, vocab: i64, device: Device) -> Result<Tensor> {
        let values: Vec<f32> = self
            .legal_ids(vocab as usize)
            .into_iter()
            .map(|legal| if legal { 0.0 } else { f32::NEG_INFINITY })
            .collect();
        Ok(Tensor::f_from_slice(&values)?.f_to_device(device)?)
    }

    /// Probabilities (B, V) in float32 after the legal mask, temperature, top-k and top-p,
    /// computed with tensor ops on the logits' device (zero for every id that is cut).
    pub fn probabilities(&self, logits: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let mut scaled = logits
            .f_to_kind(Kind::Float)?
            .f_add(mask)?
            .f_div_scalar(self.temperature)?;
        if let Some(k) = self.top_k {
            let k = (k as i64).min(scaled.size()[1]);
            let (top, _) = scaled.f_topk(k, -1, true, true)?;
            // minGPT keeps every logit equal to the k-th largest (ties survive).
            let kth = top.f_narrow(1, k - 1, 1)?;
            scaled = scaled.f_masked_fill(&scaled.f_lt_tensor(&kth)?, f64::NEG_INFINITY)?;
        }
        let mut probs = scaled.f_softmax(-1, Kind::Float)?;
        if let Some(p) = self.top_p {
            // Keep the smallest prefix of the sorted ids whose mass reaches p: an id is cut
            // when the mass before it already reaches p. Stable sort: ties keep id order.
            let (sorted, order) = probs.f_sort_stable(true, -1, true)?;
            let before = sorted.f_cumsum(-1, Kind::Float)?.f_sub(&sorted)?;
            let kept = sorted.f_masked_fill(&before.f_ge(p)?, 0.0)?;
            probs = probs.f_zeros_like()?.f_scatter(-1, &order, &kept)?;
            probs = probs.f_div(&probs.f_sum_dim_intlist(-1, true, Kind::Float)?)?;
        }
        Ok(probs)
    }

    /// One token per row of logits (B, V): the first legal maximum when greedy, else a
    /// draw from `probabilities` with one uniform number per row, in row order.
    pub fn pick(&self, logits: &Tensor, mask: &Tensor, draws: &mut Draws) -> Result<Vec<i64>> {
        if self.greedy {
            let masked = logits.f_to_kind(Kind::Float)?.f_add(mask)?;
            if masked.f_isnan()?.f_any()?.int64_value(&[]) != 0 {
                return Err(not_finite());
            }
            let best = masked.f_argmax(-1, false)?.f_to_device(Device::Cpu)?;
            return Ok(Vec::<i64>::try_from(&best)?);
        }
        let probs = self.probabilities(logits, mask)?.f_to_device(Device::Cpu)?;
        let vocab = probs.size()[1] as usize;
        let host = Vec::<f32>::try_from(&probs.f_flatten(0, -1)?)?;
        host.chunks(vocab.max(1))
            .enumerate()
            .map(|(index, row)| {
                // NaN or +inf logits turn the whole row into NaN; without this check the
                // draw would quietly return id 0.
                if row.iter().any(|p| p.is_nan()) {
                    return Err(not_finite());
                }
                Ok(draw(row, draws.uniform(index)) as i64)
            })
            .collect()
    }
}

pub fn not_finite() -> Error {
    Error::Value(
        "the model's logits are NaN or +inf (are its weights finite?); no token can be chosen"
            .into(),
    )
}

/// Inverse-CDF draw: the first id whose cumulative probability exceeds u (times the row's
/// total, which rounding keeps near but not exactly at 1); never an id of probability 0.
pub fn draw(row: &[f32], u: f64) -> usize {
    let total: f64 = row.iter().map(|&p| p as f64).sum();
    let target = u * total;
    let mut acc = 0.0;
    let mut last_nonzero = 0;
    for (i, &p) in row.iter().enumerate() {
        if p > 0.0 {
            acc += p as f64;
            last_nonzero = i;
            if target < acc {
                return i;
            }
        }
    }
    last_nonzero
}

pub fn rng(seed: Option<u64>) -> ChaCha8Rng {
    match seed {
        Some(seed) => ChaCha8Rng::seed_from_u64(seed),
        None => ChaCha8Rng::from_os_rng(),
    }
}

/// How a sampled batch is seeded.
#[derive(Debug, Clone)]
pub enum Seeds {
    /// One stream for the whole batch, read row after row at each step (`None`: seeded by
    /// the OS).
    Batch(Option<u64>),
    /// One stream per row: a row's tokens then depend on its own seed and its own
    /// probabilities only, not on the rows sampled beside it.
    Rows(Vec<u64>),
}

/// The uniform numbers of the draws, from `Seeds`: one stream shared by every row, or one
/// per row.
pub struct Draws {
    streams: Vec<ChaCha8Rng>,
    shared: bool,
}

impl Draws {
    pub fn new(seeds: &Seeds, batch: usize) -> Result<Self> {
        Ok(match seeds {
            Seeds::Batch(seed) => Draws {
                streams: vec![rng(*seed)],
                shared: true,
            },
            Seeds::Rows(rows) if rows.len() == batch => Draws {
                streams: rows.iter().map(|&s| ChaCha8Rng::seed_from_u64(s)).collect(),
                shared: false,
            },
            Seeds::Rows(rows) => {
                return Err(Error::Value(format!(
                    "expected one seed per row, {batch} in all, got {}",
                    rows.len()
                )))
            }
        })
    }

    /// The next uniform number in [0, 1) for `row` (rows beyond the batch cannot occur:
    /// `pick` reads one per row of logits, which has the batch's rows).
    fn uniform(&mut self, row: usize) -> f64 {
        let index = if self.shared {
            0
        } else {
            row.min(self.streams.len() - 1)
        };
        self.streams[index].random()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probs(s: &Sampling, logits: &[f32]) -> Vec<f32> {
        let t = Tensor::from_slice(logits).view([1, logits.len() as i64]);
        let mask = s.mask(logits.len() as i64, Device::Cpu).unwrap();
        Vec::<f32>::try_from(&s.probabilities(&t, &mask).unwrap().flatten(0, -1)).unwrap()
    }

    #[test]
    fn top_k_keeps_ties_and_top_p_keeps_the_smallest_prefix() {
        let s = Sampling {
            top_k: Some(2),
            ..Default::default()
        };
        let p = probs(&s, &[1.0, 3.0, 3.0, 0.0]);
        assert_eq!(p[0], 0.0);
        assert!((p[1] - 0.5).abs() < 1e-6 && (p[2] - 0.5).abs() < 1e-6);
        let s = Sampling {
            top_p: Some(0.7),
            ..Default::default()
        };
        let p = probs(&s, &[0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()]);
        assert!((p[0] - 0.625).abs() < 1e-6 && (p[1] - 0.375).abs() < 1e-6 && p[2] == 0.0);
    }

    #[test]
    fn range_is_respected_and_seeds_repeat() {
        let s = Sampling {
            token_ranges: vec![(2, 4)],
            ..Default::default()
        };
        let logits = Tensor::from_slice(&[9.0f32, 9.0, 0.0, 0.0, 9.0].repeat(50)).view([50, 5]);
        let mask = s.mask(5, Device::Cpu).unwrap();
        let draw = |seed| {
            s.pick(
                &logits,
                &mask,
                &mut Draws::new(&Seeds::Batch(Some(seed)), 50).unwrap(),
            )
            .unwrap()
        };
        let a = draw(7);
        assert!(a.iter().all(|&t| (2..4).contains(&t)));
        assert_eq!(a, draw(7));
        assert_ne!(a, draw(8));
        let one = Tensor::from_slice(&[9.0f32, 9.0, 0.0, 0.0, 9.0]).view([1, 5]);
        for (ranges, expected) in [(vec![(1, 2), (3, 5)], 1), (vec![(2, 3), (4, 5)], 4)] {
            let g = Sampling {
                greedy: true,
                token_ranges: ranges,
                ..Default::default()
            };
            let mask = g.mask(5, Device::Cpu).unwrap();
            assert_eq!(
                g.pick(
                    &one,
                    &mask,
                    &mut Draws::new(&Seeds::Batch(Some(0)), 1).unwrap()
                )
                .unwrap(),
                vec![expected]
            );
        }
    }

    #[test]
    fn a_row_with_its_own_seed_draws_the_same_in_any_batch() {
        let s = Sampling::default();
        let row = [0.3f32, 0.1, 0.2, 0.4, 0.0];
        let logits = |rows: usize| Tensor::from_slice(&row.repeat(rows)).view([rows as i64, 5]);
        let mask = s.mask(5, Device::Cpu).unwrap();
        let run = |seeds: Vec<u64>| {
            let mut draws = Draws::new(&Seeds::Rows(seeds.clone()), seeds.len()).unwrap();
            (0..20)
                .map(|_| s.pick(&logits(seeds.len()), &mask, &mut draws).unwrap())
                .collect::<Vec<_>>()
        };
        let alone: Vec<i64> = run(vec![7]).iter().map(|t| t[0]).collect();
        let beside: Vec<i64> = run(vec![3, 7, 9]).iter().map(|t| t[1]).collect();
        assert_eq!(alone, beside);
        assert!(Draws::new(&Seeds::Rows(vec![1, 2]), 3).is_err());
    }

    #[test]
    fn draws_never_pick_zero_probability_ids() {
        let row = [0.0f32, 0.25, 0.0, 0.75, 0.0];
        assert_eq!(draw(&row, 0.0), 1);
        assert_eq!(draw(&row, 0.2499), 1);
        assert_eq!(draw(&row, 0.25), 3);
        assert_eq!(draw(&row, 0.999_999_9), 3);
    }

    #[test]
    fn options_are_validated() {
        let bad = [
            Sampling {
                temperature: 0.0,
                ..Default::default()
            },
            Sampling {
                top_k: Some(0),
                ..Default::default()
            },
            Sampling {
                top_p: Some(1.5),
                ..Default::default()
            },
            Sampling {
                token_ranges: vec![(3, 11)],
                ..Default::default()
            },
        ];
        assert!(bad.iter().all(|s| s.validate(10).is_err()));
        assert!(Sampling::default().validate(10).is_ok());
    }
}
