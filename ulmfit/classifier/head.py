"""The ULMFiT classifier: encoder read with BPT3C, concat pooling, and a small pooling head.

Hyperparameters (``bptt``, ``max_len``, ``hidden``, ``dropouts``) have no defaults here, and
``checkpoint_tokens`` is off unless given: they belong to the train stage's config, the one place
they are written down.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from .bpt3c import bpt3c_features


class PoolingClassifierHead(nn.Sequential):
    """BatchNorm, dropout, linear to ``hidden``, ReLU, BatchNorm, dropout, linear to the classes.

    ``in_features`` is 3 x the encoder's output size (last, max and mean pooled). ULMFiT uses
    ``hidden=50`` and ``dropouts=(output_p * drop_mult of the encoder config, 0.1)``.
    """

    def __init__(self, in_features: int, n_classes: int, hidden: int,
                 dropouts: Sequence[float]) -> None:
        if len(dropouts) != 2:
            raise ValueError(f"dropouts needs two probabilities (one per linear layer), got {dropouts}")
        super().__init__(
            nn.BatchNorm1d(in_features),
            nn.Dropout(dropouts[0]),
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.BatchNorm1d(hidden),
            nn.Dropout(dropouts[1]),
            nn.Linear(hidden, n_classes),
        )


class TextClassifier(nn.Module):
    """Encoder + head; ``forward(tokens [B,T] right-padded, lengths [B]) -> logits [B, classes]``.

    The encoder is kept as the ``encoder`` attribute, like in ``LanguageModel``, so the
    fine-tuned language model's ``encoder.*`` weights load into the classifier unchanged.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module, bptt: int, max_len: int,
                 checkpoint_tokens: int = 0) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.bptt = bptt
        self.max_len = max_len
        self.checkpoint_tokens = checkpoint_tokens

    def features(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        return bpt3c_features(self.encoder, tokens, lengths, self.bptt, self.max_len,
                              self.checkpoint_tokens)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        return self.head(self.features(tokens, lengths))

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Bottom to top: [embedding], [lstm0], ..., [lstm_last], [head].

        Without a tied decoder the embedding is its own bottom group (frozen longest, smallest
        discriminative learning rate); the head is the top group (trained first).
        """
        return ([list(self.encoder.embedding.parameters())] + self.encoder.layer_groups()
                + [list(self.head.parameters())])


def gradual_unfreezing_schedule(n_groups: int, epoch: int) -> int:
    """How many top layer groups train in ``epoch`` (0-based): the head only, one more per epoch."""
    if n_groups < 1 or epoch < 0:
        raise ValueError(f"need n_groups >= 1 and epoch >= 0, got {n_groups} and {epoch}")
    return min(n_groups, epoch + 1)


def set_trainable_groups(groups: Sequence[Sequence[nn.Parameter]], n_trainable: int) -> None:
    """Let the top ``n_trainable`` groups train and freeze the rest (``requires_grad`` flags)."""
    first_trainable = len(groups) - n_trainable
    for index, group in enumerate(groups):
        for param in group:
            param.requires_grad_(index >= first_trainable)
