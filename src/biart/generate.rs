//! Autoregressive continuation with a KV cache: sampling (greedy, temperature, top-k,
//! top-p) and beam search. New tokens get segment 1 (GEN). Everything runs without
//! autograd.

use super::model::Biart;
use crate::error::{Error, Result};
use crate::sampling::{self, Draws, Sampling, Seeds};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone)]
pub struct Generation {
    pub steps: i64,
    pub sampling: Sampling,
    pub seeds: Seeds,
    /// A sequence that emits this token is finished: later positions get `pad_token`.
    pub stop_token: Option<i64>,
    pub pad_token: i64,
}

/// Called after each step with (done, total); an error aborts generation.
pub type Progress<'a> = dyn FnMut(i64, i64) -> Result<()> + 'a;

const GEN_SEGMENT: i64 = 1;

fn check_request(
    model: &Biart,
    idx: &Tensor,
    seg: &Tensor,
    steps: i64,
    stop: Option<i64>,
    pad: i64,
) -> Result<()> {
    model.check_ids(idx, seg, 0)?;
    let prefix = idx.size()[1];
    if prefix < 1 {
        return Err(Error::Value(
            "the prefix must hold at least one token".into(),
        ));
    }
    if steps < 0 {
        return Err(Error::Value(format!("steps must be >= 0, got {steps}")));
    }
    let block = model.config().block_size;
    if prefix + steps > block {
        return Err(Error::Value(format!(
            "a prefix of {prefix} tokens plus {steps} steps exceeds the block size {block}"
        )));
    }
    let vocab = model.config().vocab_size;
    for (what, id) in [("stop_token", stop.unwrap_or(0)), ("pad_token", pad)] {
        if !(0..vocab).contains(&id) {
            return Err(Error::Value(format!(
                "{what} {id} is outside the vocabulary [0, {vocab})"
            )));
        }
    }
    Ok(())
}

fn host_logits(logits: &Tensor) -> Result<Vec<f32>> {
    let flat = logits
        .f_to_kind(Kind::Float)?
        .f_to_device(Device::Cpu)?
        .f_flatten(0, -1)?;
    Ok(Vec::<f32>::try_from(&flat)?)
}

/// `len` copies of `value` (`what` they are, for the error), or a MemoryError instead of
/// an aborting allocation.
fn host_buffer(len: usize, value: i64, what: &str) -> Result<Vec<i64>> {
    let mut buffer = Vec::new();
    buffer
        .try_reserve_exact(len)
        .map_err(|_| Error::Memory(format!("cannot allocate {len} {what} on the host")))?;
    buffer.resize(len, value);
    Ok(buffer)
}

fn column(tokens: &[i64], device: Device) -> Result<Tensor> {
    Ok(Tensor::f_from_slice(tokens)?
        .f_view([tokens.len() as i64, 1])?
        .f_to_device(device)?)
}

/// Continues each row of `idx` by `steps` tokens: (B, steps) int64 on the model's device.
pub fn generate(
    model: &Biart,
    idx: &Tensor,
    seg: &Tensor,
    g: &Generation,
    progress: &mut Progress,
) -> Result<Tensor> {
    check_request(model, idx, seg, g.steps, g.stop_token, g.pad_token)?;
    let vocab = model.config().vocab_size;
    g.sampling.validate(vocab)?;
    let _guard = tch::no_grad_guard();
    let device = model.device();
    let batch = idx.size()[0];
    let mut draws = Draws::new(&g.seeds, batch as usize)?;
    if g.steps == 0 || batch == 0 {
        return Ok(Tensor::f_full(
            [batch, g.steps],
            g.pad_token,
            (Kind::Int64, device),
        )?);
    }
    // The cache first: for an absurd batch it is the allocation that fails, cleanly.
    let mut cache = model.new_cache(batch)?;
    let mut out = host_buffer((batch * g.steps) as usize, g.pad_token, "output tokens")?;
    let mut logits = model.forward_cached(idx, seg, &mut cache)?;
    let mask = g.sampling.mask(vocab, device)?;
    let mut finished = vec![false; batch as usize];
    let gen_seg = Tensor::f_full([batch, 1], GEN_SEGMENT, (Kind::Int64, device))?;
    for step in 0..g.steps {
        let mut tokens = g.sampling.pick(&logits, &mask, &mut draws)?;
        for (row, token) in tokens.iter_mut().enumerate() {
            if finished[row] {
                *token = g.pad_token;
            } else if Some(*token) == g.stop_token {
                finished[row] = true;
            }
            out[row * g.steps as usize + step as usize] = *token;
        }
        progress(step + 1, g.steps)?;
        if finished.iter().all(|&f| f) || step + 1 == g.steps {
            break;
        }
        logits = model.forward_cached(&column(&tokens, device)?, &gen_seg, &mut cache)?;
    }
    Ok(Tensor::f_from_slice(&out)?
        .f_view([batch, g.steps])?
        .f_to_device(device)?)
}

/// Teacher-forced logits through the KV cache: the first `prefix` tokens are one prefill,
/// then one token per step. Row t of the result holds the logits after token
/// `prefix - 1 + t`, so it equals `forward(idx, seg)[:, prefix - 1:]` up to rounding.
pub fn cached_logits(model: &Biart, idx: &Tensor, seg: &Tensor, prefix: i64) -> Result<Tensor> {
    model.check_ids(idx, seg, 0)?;
    let total = idx.size()[1];
    if prefix < 1 || prefix > total {
        return Err(Error::Value(format!(
            "prefix must be in [1, {total}], got {prefix}"
        )));
    }
    let _guard = tch::no_grad_guard();
    let mut cache = model.new_cache(idx.size()[0])?;
    let mut rows = vec![model.forward_cached(
        &idx.f_narrow(1, 0, prefix)?,
        &seg.f_narrow(1, 0, prefix)?,
        &mut cache,
    )?];
    for t in prefix..total {
        rows.push(model.forward_cached(
            &idx.f_narrow(1, t, 1)?,
            &seg.f_narrow(1, t, 1)?,
            &mut cache,
        )?);
    }
    Ok(Tensor::f_stack(&rows, 1)?)
}

#[derive(Clone)]
struct Beam {
    tokens: Vec<i64>,
    score: f64,
    finished: bool,
}

/// Beam search: the `beams` most likely continuations per row, by summed log-probability
/// over the legal range; returns the best one per row (B, steps) and its score (B).
/// `progress(done, total)` is called after each step, as in `generate`; an error aborts.
#[allow(clippy::too_many_arguments)]
pub fn beam_search(
    model: &Biart,
    idx: &Tensor,
    seg: &Tensor,
    steps: i64,
    beams: usize,
    token_ranges: &[(i64, i64)],
    stop_token: Option<i64>,
    pad_token: i64,
    progress: &mut Progress,
) -> Result<(Tensor, Tensor)> {
    check_request(model, idx, seg, steps, stop_token, pad_token)?;
    if beams < 1 {
        return Err(Error::Value("beams must be >= 1, got 0".into()));
    }
    let vocab = model.config().vocab_size;
    let checked = Sampling {
        token_ranges: token_ranges.to_vec(),
        ..Default::default()
    };
    checked.validate(vocab)?;
    let _guard = tch::no_grad_guard();
    let device = model.device();
    let mask = checked.mask(vocab, device)?;
    let batch = idx.size()[0] as usize;
    let width = beams;
    let mut cache = model.new_cache(idx.size()[0])?;
    let prefill = model.forward_cached(idx, seg, &mut cache)?;
    // Every row starts as `width` copies; only the first is live so beams stay distinct.
    // An absurd width fails here or in the cache's copy, as a MemoryError, not an abort.
    let total = batch.saturating_mul(width);
    let mut rows = host_buffer(total, 0, "beam rows")?;
    for (i, row) in rows.iter_mut().enumerate() {
        *row = (i / width) as i64;
    }
    cache.select_rows(&Tensor::f_from_slice(&rows)?.f_to_device(device)?)?;
    let mut logits =
        prefill.f_index_select(0, &Tensor::f_from_slice(&rows)?.f_to_device(device)?)?;
    let mut state: Vec<Vec<Beam>> = (0..batch)
        .map(|_| {
            (0..width)
                .map(|w| Beam {
                    tokens: Vec::new(),
                    score: if w == 0 { 0.0 } else { f64::NEG_INFINITY },
                    finished: false,
                })
                .collect()
        })
        .collect();
    let gen_seg = Tensor::f_full(
        [(batch * width) as i64, 1],
        GEN_SEGMENT,
        (Kind::Int64, device),
    )?;
    let vocab = vocab as usize;
    for step in 0..steps {
        // Log-probabilities renormalised over the legal ids (-inf elsewhere), as the
        // sampler's distribution is.
        let host = host_logits(
            &logits
                .f_to_kind(Kind::Float)?
                .f_add(&mask)?
                .f_log_softmax(-1, Kind::Float)?,
        )?;
        let mut parents = Vec::with_capacity(batch * width);
        let mut next_tokens = Vec::with_capacity(batch * width);
        for (b, beams_b) in state.iter_mut().enumerate() {
            // (score, parent beam, token): finished beams carry on with padding only.
            let mut candidates: Vec<(f64, usize, i64)> = Vec::new();
            for (w, beam) in beams_b.iter().enumerate() {
                if beam.score == f64::NEG_INFINITY {
                    continue;
                }
                if beam.finished {
                    candidates.push((beam.score, w, pad_token));
                    continue;
                }
                let row = &host[(b * width + w) * vocab..(b * width + w + 1) * vocab];
                if row.iter().any(|p| p.is_nan()) {
                    return Err(sampling::not_finite());
                }
                for i in best_ids(row, width) {
                    candidates.push((beam.score + row[i] as f64, w, i as i64));
                }
            }
            candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            let mut chosen: Vec<Beam> = Vec::with_capacity(width);
            for slot in 0..width {
                match candidates.get(slot) {
                    Some(&(score, parent, token)) => {
                        let old = &beams_b[parent];
                        let mut tokens = old.tokens.clone();
                        tokens.push(token);
                        chosen.push(Beam {
                            tokens,
                            score,
                            finished: old.finished || Some(token) == stop_token,
                        });
                        parents.push((b * width + parent) as i64);
                        next_tokens.push(token);
                    }
                    None => {
                        chosen.push(Beam {
                            tokens: vec![pad_token; step as usize + 1],
                            score: f64::NEG_INFINITY,
                            finished: true,
                        });
                        parents.push((b * width) as i64);
                        next_tokens.push(pad_token);
                    }
                }
            }
            *beams_b = chosen;
        }
        progress(step + 1, steps)?;
        let all_done = state.iter().all(|bs| bs.iter().all(|beam| beam.finished));
        if all_done || step + 1 == steps {
            break;
        }
        cache.select_rows(&Tensor::f_from_slice(&parents)?.f_to_device(device)?)?;
        logits = model.forward_cached(&column(&next_tokens, device)?, &gen_seg, &mut cache)?;
    }
    let mut tokens = Vec::with_capacity(batch * steps as usize);
    let mut scores = Vec::with_capacity(batch);
    for beams_b in &state {
        // Beams are kept sorted by score, so the first is the best (ties: earliest).
        let best = &beams_b[0];
        let mut t = best.tokens.clone();
        t.resize(steps as usize, pad_token);
        tokens.extend(t);
        scores.push(best.score);
    }
    Ok((
        Tensor::f_from_slice(&tokens)?
            .f_view([batch as i64, steps])?
            .f_to_device(device)?,
        Tensor::f_from_slice(&scores)?.f_to_device(device)?,
    ))
}

/// The `k` legal ids (log-probability above -inf) of highest log-probability, best first,
/// ties by lower id: a partial selection, then a sort of only those `k`.
fn best_ids(row: &[f32], k: usize) -> Vec<usize> {
    let better = |i: &usize, j: &usize| row[*j].total_cmp(&row[*i]).then(i.cmp(j));
    let mut legal: Vec<usize> = (0..row.len())
        .filter(|&i| row[i] > f32::NEG_INFINITY)
        .collect();
    if k < legal.len() {
        legal.select_nth_unstable_by(k, better);
        legal.truncate(k);
    }
    legal.sort_by(better);
    legal
}

#[cfg(test)]
mod tests {
    use super::best_ids;

    #[test]
    fn best_ids_equal_a_full_sort_and_skip_illegal_ids() {
        let ninf = f32::NEG_INFINITY;
        let row = [0.5, -1.0, ninf, 2.0, 0.5, -3.0, 2.0, ninf, 0.1];
        // Full order: 3 and 6 (2.0, lower id first), 0 and 4 (0.5), 8, 1, 5.
        let full = [3, 6, 0, 4, 8, 1, 5];
        for k in 0..=9 {
            assert_eq!(best_ids(&row, k), full[..k.min(full.len())], "k = {k}");
        }
    }
}
