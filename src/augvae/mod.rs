//! AugVAE: the multi-level VQ autoencoder of L-Verse and its single-level fine-tune.

pub mod blocks;
pub mod config;
pub mod decoder;
pub mod encoder;
pub mod model;
pub mod quantizer;

pub use config::AugVaeConfig;
pub use model::AugVae;

#[cfg(test)]
mod tests;
