//! Core tests of AugVAE without Python: architecture bookkeeping, shapes, error paths.
//! Numerical parity with an independent PyTorch implementation lives in tests/*.py.

use super::{AugVae, AugVaeConfig};
use crate::error::Error;
use crate::params::{Init, TensorMap};
use tch::{Kind, Tensor};

fn small(single_level: Option<usize>) -> AugVaeConfig {
    AugVaeConfig {
        hidden_dim: 32,
        ch_mult: vec![1, 2],
        inner_ch_mult: vec![2, 4],
        num_res_blocks: 1,
        z_channels: 32,
        codebook_dim: 16,
        num_tokens: 64,
        resolution: 32,
        levels: 3,
        single_level,
        ..AugVaeConfig::ml()
    }
}

fn random_weights(config: &AugVaeConfig) -> TensorMap {
    tch::manual_seed(0);
    let mut map = TensorMap::new();
    for spec in AugVae::param_specs(config).unwrap() {
        let tensor = match (&spec.tied_to, &spec.init) {
            (Some(source), _) => map[source].shallow_clone(),
            (None, Init::Ones) => {
                Tensor::ones(spec.shape.as_slice(), (Kind::Float, tch::Device::Cpu))
            }
            (None, Init::Zeros) => {
                Tensor::zeros(spec.shape.as_slice(), (Kind::Float, tch::Device::Cpu))
            }
            (None, Init::CopyOf(source)) => map[source].copy(),
            _ => Tensor::randn(spec.shape.as_slice(), (Kind::Float, tch::Device::Cpu)) * 0.1,
        };
        map.insert(spec.name, tensor);
    }
    map
}

fn unique_numel(config: &AugVaeConfig) -> (usize, i64) {
    let specs = AugVae::param_specs(config).unwrap();
    let numel = specs
        .iter()
        .filter(|s| s.tied_to.is_none())
        .map(|s| s.shape.iter().product::<i64>())
        .sum();
    (specs.len(), numel)
}

#[test]
fn official_sizes_match_the_spec() {
    // SPEC §2.7 and §2.8: key counts and unique parameter totals.
    assert_eq!(unique_numel(&AugVaeConfig::ml()), (610, 225_426_691));
    assert_eq!(unique_numel(&AugVaeConfig::sl()), (346, 116_493_315));
    assert_eq!(AugVaeConfig::ml().tokens_per_image(), 5440);
    assert_eq!(AugVaeConfig::sl().tokens_per_image(), 1024);
    assert_eq!(AugVaeConfig::ml().level_sizes(), vec![64, 32, 16, 8]);
}

#[test]
fn official_key_shapes() {
    let specs = AugVae::param_specs(&AugVaeConfig::ml()).unwrap();
    let shape = |name: &str| {
        specs
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.shape.clone())
    };
    assert_eq!(shape("encoders.0.conv_in.weight"), Some(vec![128, 3, 3, 3]));
    assert_eq!(
        shape("encoders.0.down.1.block.0.nin_shortcut.weight"),
        Some(vec![256, 128, 1, 1])
    );
    assert_eq!(
        shape("encoders.1.conv_in.weight"),
        Some(vec![128, 256, 3, 3])
    );
    assert_eq!(
        shape("decoders.0.conv_in.weight"),
        Some(vec![512, 256, 3, 3])
    );
    assert_eq!(
        shape("decoders.1.conv_in.weight"),
        Some(vec![512, 512, 3, 3])
    );
    assert_eq!(
        shape("decoders.3.up.2.upsample.conv.weight"),
        Some(vec![512, 512, 3, 3])
    );
    assert_eq!(
        shape("decoders.3.up.0.block.0.nin_shortcut.weight"),
        Some(vec![128, 256, 1, 1])
    );
    assert_eq!(
        shape("decoders.3.conv_out.weight"),
        Some(vec![3, 128, 3, 3])
    );
    assert_eq!(
        shape("quantizers.3.embedding.cluster_size"),
        Some(vec![8192])
    );
    let sl = AugVae::param_specs(&AugVaeConfig::sl()).unwrap();
    assert!(sl
        .iter()
        .any(|s| s.name == "connectors.1.weight" && s.shape == vec![512, 256, 1, 1]));
    assert!(!sl.iter().any(|s| s.name.starts_with("encoders.2")));
}

#[test]
fn shapes_through_every_entry_point() {
    for single_level in [None, Some(1)] {
        let config = small(single_level);
        let model = AugVae::from_tensors(&config, &random_weights(&config)).unwrap();
        let x = Tensor::rand([2, 3, 32, 32], (Kind::Float, tch::Device::Cpu)) * 2 - 1;
        let ids = model.encode(&x).unwrap();
        assert_eq!(ids.size(), vec![2, config.tokens_per_image()]);
        assert_eq!(ids.kind(), Kind::Int64);
        assert!(ids.max().int64_value(&[]) < 64 && ids.min().int64_value(&[]) >= 0);
        assert_eq!(model.decode(&ids, None).unwrap().size(), vec![2, 3, 32, 32]);
    }
}

#[test]
fn every_bad_weight_is_listed() {
    let config = small(Some(1));
    let mut weights = random_weights(&config);
    weights.remove("decoders.1.conv_out.bias");
    weights.insert(
        "encoders.0.conv_in.weight".into(),
        Tensor::zeros([1], (Kind::Float, tch::Device::Cpu)),
    );
    let Err(Error::Checkpoint(message)) = AugVae::from_tensors(&config, &weights) else {
        panic!("expected a checkpoint error");
    };
    assert!(message.contains("2 parameter problem(s)"), "{message}");
    assert!(
        message.contains("missing decoders.1.conv_out.bias, expected shape [3]"),
        "{message}"
    );
    assert!(
        message.contains("encoders.0.conv_in.weight: expected shape [32, 3, 3, 3], found [1]"),
        "{message}"
    );
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let config = small(Some(1));
    let model = AugVae::from_tensors(&config, &random_weights(&config)).unwrap();
    let cpu = (Kind::Float, tch::Device::Cpu);
    assert!(matches!(
        model.encode(&Tensor::zeros([3, 32, 32], cpu)),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        model.encode(&Tensor::zeros(
            [1, 3, 32, 32],
            (Kind::Double, tch::Device::Cpu)
        )),
        Err(Error::Kind(_))
    ));
    let too_big = Tensor::full([1, 64], 64, (Kind::Int64, tch::Device::Cpu));
    assert!(matches!(model.decode(&too_big, None), Err(Error::Value(_))));
    let short = Tensor::zeros([1, 10], (Kind::Int64, tch::Device::Cpu));
    assert!(matches!(model.decode(&short, None), Err(Error::Shape(_))));
}

#[test]
fn invalid_configs_are_rejected() {
    let mut config = small(None);
    config.hidden_dim = 20;
    assert!(matches!(config.validate(), Err(Error::Value(_))));
    let mut config = small(Some(2));
    assert!(matches!(config.validate(), Err(Error::Value(_))));
    config.single_level = None;
    config.resolution = 30;
    assert!(matches!(config.validate(), Err(Error::Value(_))));
}
