//! The AugVAE encoder (taming `Encoder` with `double_z=False`, SPEC §2.1).

use super::blocks::{swish, AttnBlock, Conv2d, Downsample, GroupNorm, ResnetBlock};
use crate::error::Result;
use crate::params::Path;
use tch::Tensor;

struct DownLevel {
    blocks: Vec<ResnetBlock>,
    attns: Vec<AttnBlock>,
    downsample: Option<Downsample>,
}

pub struct Encoder {
    conv_in: Conv2d,
    down: Vec<DownLevel>,
    mid_block_1: ResnetBlock,
    mid_attn_1: Option<AttnBlock>,
    mid_block_2: ResnetBlock,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

pub struct EncoderShape {
    pub in_channels: i64,
    pub hidden_dim: i64,
    pub ch_mult: Vec<i64>,
    pub num_res_blocks: i64,
    pub z_channels: i64,
    pub use_attn: bool,
    pub groups: i64,
}

impl Encoder {
    pub fn new(p: &Path, s: &EncoderShape) -> Self {
        let groups = s.groups;
        let conv_in = Conv2d::new(&p.sub("conv_in"), s.in_channels, s.hidden_dim, 3, 1, 1);
        let levels = s.ch_mult.len();
        let mut block_in = s.hidden_dim;
        let mut down = Vec::with_capacity(levels);
        for (level, &mult) in s.ch_mult.iter().enumerate() {
            let lp = p.sub("down").sub(level);
            let block_out = s.hidden_dim * mult;
            let mut blocks = Vec::new();
            let mut attns = Vec::new();
            // Official attention sits at the level whose resolution is the quantized grid,
            // which is always the last (coarsest) level of an encoder.
            let with_attn = s.use_attn && level == levels - 1;
            for i in 0..s.num_res_blocks {
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
            let downsample =
                (level != levels - 1).then(|| Downsample::new(&lp.sub("downsample"), block_in));
            down.push(DownLevel {
                blocks,
                attns,
                downsample,
            });
        }
        let mid = p.sub("mid");
        Encoder {
            conv_in,
            down,
            mid_block_1: ResnetBlock::new(&mid.sub("block_1"), block_in, block_in, groups),
            mid_attn_1: s
                .use_attn
                .then(|| AttnBlock::new(&mid.sub("attn_1"), block_in, groups)),
            mid_block_2: ResnetBlock::new(&mid.sub("block_2"), block_in, block_in, groups),
            norm_out: GroupNorm::new(&p.sub("norm_out"), block_in, groups),
            conv_out: Conv2d::new(&p.sub("conv_out"), block_in, s.z_channels, 3, 1, 1),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.conv_in.forward(x)?;
        for level in &self.down {
            for (i, block) in level.blocks.iter().enumerate() {
                h = block.forward(&h)?;
                if let Some(attn) = level.attns.get(i) {
                    h = attn.forward(&h)?;
                }
            }
            if let Some(downsample) = &level.downsample {
                h = downsample.forward(&h)?;
            }
        }
        h = self.mid_block_1.forward(&h)?;
        if let Some(attn) = &self.mid_attn_1 {
            h = attn.forward(&h)?;
        }
        h = self.mid_block_2.forward(&h)?;
        self.conv_out.forward(&swish(&self.norm_out.forward(&h)?)?)
    }
}
