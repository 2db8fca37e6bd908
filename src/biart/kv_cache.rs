//! Keys and values of past positions, preallocated to the block size and written in
//! place (no concatenation per step).

use crate::error::{Error, Result};
use tch::{Device, Kind, Tensor};

pub struct LayerCache {
    keys: Tensor,
    values: Tensor,
}

pub struct KvCache {
    pub layers: Vec<LayerCache>,
    /// Number of positions already written.
    pub len: i64,
    capacity: i64,
}

impl KvCache {
    pub fn new(
        n_layer: i64,
        batch: i64,
        n_head: i64,
        capacity: i64,
        head_dim: i64,
        kind: Kind,
        device: Device,
    ) -> Result<Self> {
        let shape = [batch, n_head, capacity, head_dim];
        let refused = |err| {
            let bytes = 2.0
                * n_layer as f64
                * shape.iter().product::<i64>() as f64
                * kind.elt_size_in_bytes() as f64;
            let gib = bytes / f64::from(1u32 << 30);
            allocation_refused(
                format!("{batch} sequences of {capacity} positions ({gib:.1} GiB on {device:?})"),
                err,
            )
        };
        let layers = (0..n_layer)
            .map(|_| {
                // Uninitialised on purpose: positions at or past `len` are never read, and
                // zero-filling the whole block cost ~20% of a short generation.
                Ok(LayerCache {
                    keys: Tensor::f_empty(shape, (kind, device)).map_err(refused)?,
                    values: Tensor::f_empty(shape, (kind, device)).map_err(refused)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(KvCache {
            layers,
            len: 0,
            capacity,
        })
    }

    pub fn check_room(&self, steps: i64) -> Result<()> {
        if self.len + steps > self.capacity {
            return Err(Error::Value(format!(
                "sequence of {} tokens exceeds the block size {}",
                self.len + steps,
                self.capacity
            )));
        }
        Ok(())
    }

    /// Reorders the batch rows of every layer (beam search keeps the surviving beams).
    pub fn select_rows(&mut self, rows: &Tensor) -> Result<()> {
        let refused = |err| allocation_refused(format!("{} sequences", rows.size()[0]), err);
        for layer in &mut self.layers {
            layer.keys = layer.keys.f_index_select(0, rows).map_err(refused)?;
            layer.values = layer.values.f_index_select(0, rows).map_err(refused)?;
        }
        Ok(())
    }
}

/// libtorch refusing a cache allocation, as a MemoryError naming what was asked for and
/// the first line of libtorch's message (the rest is C++ frames).
fn allocation_refused(what: String, err: tch::TchError) -> Error {
    let reason = err.to_string();
    Error::Memory(format!(
        "cannot allocate the KV cache for {what}: {}",
        reason.lines().next().unwrap_or_default()
    ))
}

impl LayerCache {
    /// Writes keys/values (B, nh, t, hs) at positions [start, start + t) and returns views
    /// of everything up to start + t.
    pub fn append(
        &mut self,
        start: i64,
        keys: &Tensor,
        values: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let t = keys.size()[2];
        self.keys.f_narrow(2, start, t)?.f_copy_(keys)?;
        self.values.f_narrow(2, start, t)?.f_copy_(values)?;
        Ok((
            self.keys.f_narrow(2, 0, start + t)?,
            self.values.f_narrow(2, 0, start + t)?,
        ))
    }
}
