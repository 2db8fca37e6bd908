//! The AugVAE decoder (taming `Decoder`, no output activation, SPEC §2.1).

use super::blocks::{swish, AttnBlock, Conv2d, GroupNorm, ResnetBlock, Upsample};
use crate::error::Result;
use crate::params::Path;
use tch::Tensor;

struct UpLevel {
    blocks: Vec<ResnetBlock>,
    attns: Vec<AttnBlock>,
    upsample: Option<Upsample>,
}

pub struct Decoder {
    conv_in: Conv2d,
    mid_block_1: ResnetBlock,
    mid_attn_1: Option<AttnBlock>,
    mid_block_2: ResnetBlock,
    /// Stored fine to coarse as in the official `up` list; run coarse to fine.
    up: Vec<UpLevel>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

pub struct DecoderShape {
    pub in_channels: i64,
    pub out_channels: i64,
    pub hidden_dim: i64,
    pub ch_mult: Vec<i64>,
    pub num_res_blocks: i64,
    pub use_attn: bool,
    pub groups: i64,
}

impl Decoder {
    pub fn new(p: &Path, s: &DecoderShape) -> Self {
        let groups = s.groups;
        let levels = s.ch_mult.len();
        let mut block_in = s.hidden_dim * s.ch_mult[levels - 1];
        let conv_in = Conv2d::new(&p.sub("conv_in"), s.in_channels, block_in, 3, 1, 1);
        let mid = p.sub("mid");
        let mid_block_1 = ResnetBlock::new(&mid.sub("block_1"), block_in, block_in, groups);
        let mid_attn_1 = s
            .use_attn
            .then(|| AttnBlock::new(&mid.sub("attn_1"), block_in, groups));
        let mid_block_2 = ResnetBlock::new(&mid.sub("block_2"), block_in, block_in, groups);
        let mut up: Vec<UpLevel> = Vec::with_capacity(levels);
        for level in (0..levels).rev() {
            let lp = p.sub("up").sub(level);
            let block_out = s.hidden_dim * s.ch_mult[level];
            // Official attention sits at the input grid's resolution: the coarsest level.
            let with_attn = s.use_attn && level == levels - 1;
            let mut blocks = Vec::new();
            let mut attns = Vec::new();
            for i in 0..=s.num_res_blocks {
                blocks.push(ResnetBlock::new(
                    &lp.sub("block").sub(i),
                    block_in,
                    block_out,
                    groups,
                ));
                block_in = block_out;
                if with_attn {
                    attns.push(AttnBlock::new(&lp.sub("attn").sub(i), block_in, groups));
                }
            }
            let upsample = (level != 0).then(|| Upsample::new(&lp.sub("upsample"), block_in));
            up.push(UpLevel {
                blocks,
                attns,
                upsample,
            });
        }
        up.reverse();
        Decoder {
            conv_in,
            mid_block_1,
            mid_attn_1,
            mid_block_2,
            up,
            norm_out: GroupNorm::new(&p.sub("norm_out"), block_in, groups),
            conv_out: Conv2d::new(&p.sub("conv_out"), block_in, s.out_channels, 3, 1, 1),
        }
    }

    pub fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let mut h = self.conv_in.forward(z)?;
        h = self.mid_block_1.forward(&h)?;
        if let Some(attn) = &self.mid_attn_1 {
            h = attn.forward(&h)?;
        }
        h = self.mid_block_2.forward(&h)?;
        for level in self.up.iter().rev() {
            for (i, block) in level.blocks.iter().enumerate() {
                h = block.forward(&h)?;
                if let Some(attn) = level.attns.get(i) {
                    h = attn.forward(&h)?;
                }
            }
            if let Some(upsample) = &level.upsample {
                h = upsample.forward(&h)?;
            }
        }
        self.conv_out.forward(&swish(&self.norm_out.forward(&h)?)?)
    }
}
