//! Named weights: one description of a model's parameter tree serves two purposes.
//!
//! * `ParamTree::collect` walks the architecture and records every parameter's official
//!   name, shape, initialiser and weight tying (the Python package builds its
//!   `torch.nn.Module` tree from that list, so names are defined once, here).
//! * `ParamTree::load` walks the same code over a map of live tensors owned by Python and
//!   hands out `shallow_clone`s, so the Rust forward pass runs on the very tensors that
//!   `state_dict()`, optimizers and `.to(device)` see. Every missing or mis-shaped name is
//!   gathered before failing, so one error lists them all.

use crate::error::{Error, Result};
use std::cell::RefCell;
use std::collections::HashMap;
use tch::{Kind, Tensor};

pub type TensorMap = HashMap<String, Tensor>;

/// How a fresh parameter is initialised; mirrors what the PyTorch layers of the official
/// code do so that a new model starts from the same distribution.
#[derive(Debug, Clone, PartialEq)]
pub enum Init {
    /// `nn.Conv2d`/`nn.Linear` default: kaiming-uniform with a = sqrt(5), i.e.
    /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the default bias uses the same bound.
    UniformFanIn(i64),
    Normal(f64),
    Ones,
    Zeros,
    /// A copy of another parameter's initial value (the EMA average starts as the codebook).
    CopyOf(String),
    /// A constant buffer (e.g. a causal mask) filled by the owner.
    LowerTriangular,
}

#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<i64>,
    pub init: Init,
    /// False for tensors that are state, not learned by gradient (EMA codebook, masks).
    pub trainable: bool,
    /// Registered in PyTorch as a buffer rather than an `nn.Parameter`.
    pub buffer: bool,
    /// Name of the parameter this one is the same tensor as (official weight sharing).
    pub tied_to: Option<String>,
}

enum Mode<'a> {
    Collect(RefCell<Vec<ParamSpec>>),
    Load {
        tensors: &'a TensorMap,
        problems: RefCell<Vec<String>>,
    },
}

/// The root of a walk over a parameter tree.
pub struct ParamTree<'a> {
    mode: Mode<'a>,
}

impl<'a> ParamTree<'a> {
    pub fn collect() -> Self {
        ParamTree {
            mode: Mode::Collect(RefCell::new(Vec::new())),
        }
    }

    pub fn load(tensors: &'a TensorMap) -> Self {
        ParamTree {
            mode: Mode::Load {
                tensors,
                problems: RefCell::new(Vec::new()),
            },
        }
    }

    pub fn root(&self) -> Path<'_, 'a> {
        Path {
            tree: self,
            prefix: String::new(),
        }
    }

    /// The recorded parameter list (collect mode).
    pub fn into_specs(self) -> Vec<ParamSpec> {
        match self.mode {
            Mode::Collect(specs) => specs.into_inner(),
            Mode::Load { .. } => Vec::new(),
        }
    }

    /// Fails with every problem seen during a load walk, listed one per line.
    pub fn finish(self, what: &str) -> Result<()> {
        if let Mode::Load { problems, .. } = self.mode {
            let problems = problems.into_inner();
            if !problems.is_empty() {
                return Err(Error::Checkpoint(format!(
                    "{what}: {} parameter problem(s):\n  {}",
                    problems.len(),
                    problems.join("\n  ")
                )));
            }
        }
        Ok(())
    }
}

/// A position in the parameter tree, like `tch::nn::Path`: names are `.`-joined.
pub struct Path<'t, 'a> {
    tree: &'t ParamTree<'a>,
    prefix: String,
}

/// What a new parameter looks like; built with the `Path` helpers below.
pub struct Var<'s> {
    pub name: &'s str,
    pub shape: &'s [i64],
    pub init: Init,
    pub trainable: bool,
    pub buffer: bool,
    pub tied_to: Option<String>,
}

impl<'t, 'a> Path<'t, 'a> {
    pub fn sub<T: std::fmt::Display>(&self, name: T) -> Path<'t, 'a> {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.prefix, name)
        };
        Path {
            tree: self.tree,
            prefix,
        }
    }

    pub fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.prefix, name)
        }
    }

    /// A learned parameter.
    pub fn param(&self, name: &str, shape: &[i64], init: Init) -> Tensor {
        self.var(Var {
            name,
            shape,
            init,
            trainable: true,
            buffer: false,
            tied_to: None,
        })
    }

    pub fn var(&self, var: Var<'_>) -> Tensor {
        let full = self.full_name(var.name);
        match &self.tree.mode {
            Mode::Collect(specs) => {
                specs.borrow_mut().push(ParamSpec {
                    name: full,
                    shape: var.shape.to_vec(),
                    init: var.init,
                    trainable: var.trainable,
                    buffer: var.buffer,
                    tied_to: var.tied_to,
                });
                Tensor::new()
            }
            Mode::Load { tensors, problems } => match tensors.get(&full) {
                None => {
                    problems
                        .borrow_mut()
                        .push(format!("missing {full}, expected shape {:?}", var.shape));
                    Tensor::new()
                }
                Some(t) => {
                    if t.size() != var.shape {
                        problems.borrow_mut().push(format!(
                            "{full}: expected shape {:?}, found {:?}",
                            var.shape,
                            t.size()
                        ));
                        Tensor::new()
                    } else if !t.is_floating_point() {
                        problems.borrow_mut().push(format!(
                            "{full}: expected a floating-point tensor, found {:?}",
                            t.kind()
                        ));
                        Tensor::new()
                    } else {
                        t.shallow_clone()
                    }
                }
            },
        }
    }
}

/// The floating dtype shared by all parameters of a loaded model (mixing dtypes inside one
/// model is a user error that libtorch would report far from its cause).
pub fn common_kind(tensors: &TensorMap) -> Result<Kind> {
    let mut kinds: Vec<(Kind, &str)> = tensors
        .iter()
        .map(|(n, t)| (t.kind(), n.as_str()))
        .collect();
    kinds.sort_by_key(|(_, n)| n.to_string());
    let Some(&(first, first_name)) = kinds.first() else {
        return Err(Error::Checkpoint("the model has no parameters".into()));
    };
    for &(kind, name) in &kinds {
        if kind != first {
            return Err(Error::Kind(format!(
                "all parameters must share one dtype: {first_name} is {first:?} but {name} is {kind:?}"
            )));
        }
    }
    Ok(first)
}
