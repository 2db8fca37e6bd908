//! Parameter lists as Python tuples, shared by every model binding.

use crate::params::{Init, ParamSpec};

/// (name, shape, init, init_arg, trainable, buffer, tied_to)
pub type SpecTuple = (
    String,
    Vec<i64>,
    &'static str,
    String,
    bool,
    bool,
    Option<String>,
);

pub fn to_tuples(specs: Vec<ParamSpec>) -> Vec<SpecTuple> {
    specs
        .into_iter()
        .map(|s| {
            let (kind, arg) = match s.init {
                Init::UniformFanIn(fan_in) => ("uniform_fan_in", fan_in.to_string()),
                Init::Normal(std) => ("normal", std.to_string()),
                Init::Ones => ("ones", String::new()),
                Init::Zeros => ("zeros", String::new()),
                Init::CopyOf(name) => ("copy_of", name),
                Init::LowerTriangular => ("lower_triangular", String::new()),
            };
            (s.name, s.shape, kind, arg, s.trainable, s.buffer, s.tied_to)
        })
        .collect()
}

pub type Params = std::collections::HashMap<String, pyo3_tch::PyTensor>;

pub fn unwrap(params: Params) -> crate::params::TensorMap {
    params.into_iter().map(|(name, t)| (name, t.0)).collect()
}
