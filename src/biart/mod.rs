//! BiART: one causal transformer for text-to-image and image-to-text (SPEC §3, §4).

pub mod attention;
pub mod config;
pub mod generate;
pub mod kv_cache;
pub mod layers;
pub mod model;

pub use config::BiartConfig;
pub use model::Biart;
