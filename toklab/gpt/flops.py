"""Training FLOPs of a GPT, counting the output head because segmenters differ in vocabulary size.

FLOPs per token = 6 N + 12 L T d, where N counts every weight used in a matrix multiply
(attention and MLP of each layer, and the V x d output head; not the embedding lookup),
L is layers, T context and d width.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    name: str
    n_layer: int
    d_model: int
    context: int
    mlp_ratio: int = 4

    def matmul_params(self, vocab_size: int) -> int:
        """Weights used in matrix multiplies: 4 d^2 attention + 2 * ratio * d^2 MLP per layer, plus V d head."""
        per_layer = 4 * self.d_model**2 + 2 * self.mlp_ratio * self.d_model**2
        return self.n_layer * per_layer + vocab_size * self.d_model

    def describe(self) -> str:
        return f"{self.name}: {self.n_layer} layers, d_model {self.d_model}, context {self.context}"


REFERENCE_SHAPE = ModelShape("gpt2-124m", n_layer=12, d_model=768, context=1024)


def flops_per_token(shape: ModelShape, vocab_size: int) -> float:
    """Training FLOPs per token (forward and backward): 6 N + 12 L T d."""
    return 6.0 * shape.matmul_params(vocab_size) + 12.0 * shape.n_layer * shape.context * shape.d_model
