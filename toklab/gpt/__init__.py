"""The built-in GPT: model shapes and FLOPs accounting (the trainer lands with `toklab pretrain`)."""

from toklab.gpt.flops import REFERENCE_SHAPE, ModelShape, flops_per_token

__all__ = ["REFERENCE_SHAPE", "ModelShape", "flops_per_token"]
