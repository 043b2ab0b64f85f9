"""The built-in GPT: model (model.py), token shards (data.py), training loop (train.py) and FLOPs accounting (flops.py)."""

from toklab.gpt.flops import REFERENCE_SHAPE, ModelShape, flops_per_token

__all__ = ["REFERENCE_SHAPE", "ModelShape", "flops_per_token"]
