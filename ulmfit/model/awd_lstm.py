"""AWD-LSTM (Merity et al. 2017): the encoder, the tied language model and its AR/TAR penalty."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..config import config_from_dict
from ..errors import UlmfitError
from ..presets import preset_values
from ..text.special import PAD_ID
from .dropout import LockedDropout, WeightDropLSTM, embedding_dropout
from .softmax import OutputLayer

State = list[tuple[Tensor, Tensor]]  # (h, c) per layer, each [1, B, H_layer]

DROPOUT_FIELDS = ("embed_p", "input_p", "hidden_p", "weight_p", "output_p")


@dataclass
class AWDLSTMConfig:
    """Architecture and regularization of an AWD-LSTM; the defaults are the ULMFiT paper's.

    Dropouts are those of Howard & Ruder (2018, sec. 4): 0.4 on the last layer's output,
    0.3 between LSTM layers, 0.4 on the embedding output, 0.05 on embedding rows and 0.5
    weight drop. (fastai's LM config uses smaller values, output 0.1, hidden 0.15, input
    0.25, embed 0.02, weight 0.2, meant to be scaled further by drop_mult for fine-tuning;
    here fine-tuning lowers ``drop_mult`` instead.) AR/TAR are AWD-LSTM's alpha=2, beta=1.
    """

    vocab_size: int = 0  # set from the vocabulary
    emb_size: int = 400
    hidden_size: int = 1152  # the paper's 1150, rounded to a multiple of 64 for the kernels
    n_layers: int = 3
    pad_id: int = PAD_ID
    embed_p: float = 0.05  # embedding dropout: whole rows (words)
    input_p: float = 0.4  # locked dropout on the embedding output
    hidden_p: float = 0.3  # locked dropout between LSTM layers
    weight_p: float = 0.5  # DropConnect on hidden-to-hidden weights
    output_p: float = 0.4  # locked dropout on the last layer's output
    drop_mult: float = 1.0  # scales all five probabilities
    tie_weights: bool = True
    softmax_cutoffs: tuple[int, ...] = ()  # adaptive softmax clusters (see model/softmax.py); (): full softmax
    ar_alpha: float = 2.0  # activation regularization
    tar_beta: float = 1.0  # temporal activation regularization

    def __post_init__(self) -> None:
        for name in ("emb_size", "hidden_size", "n_layers"):
            if getattr(self, name) < 1:
                raise UlmfitError(f"AWDLSTMConfig: {name} must be positive, got {getattr(self, name)}")
        self.softmax_cutoffs = tuple(self.softmax_cutoffs)
        if any(b <= a for a, b in zip((0,) + self.softmax_cutoffs, self.softmax_cutoffs)):
            raise UlmfitError(f"AWDLSTMConfig: softmax_cutoffs must be increasing positive ids, "
                              f"got {list(self.softmax_cutoffs)}")
        if self.drop_mult < 0:
            raise UlmfitError(f"AWDLSTMConfig: drop_mult must be >= 0, got {self.drop_mult}")
        for name, p in self.dropouts().items():
            if not 0 <= p < 1:
                raise UlmfitError(
                    f"AWDLSTMConfig: {name} * drop_mult = {p:g} is not a probability in [0, 1)"
                )

    def dropouts(self) -> dict[str, float]:
        """The five dropout probabilities as the model uses them, i.e. scaled by ``drop_mult``."""
        return {name: getattr(self, name) * self.drop_mult for name in DROPOUT_FIELDS}

    def layer_sizes(self) -> list[tuple[int, int]]:
        """(input, hidden) of each LSTM; the last one outputs ``emb_size`` so tying works."""
        outs = [self.hidden_size] * (self.n_layers - 1) + [self.emb_size]
        ins = [self.emb_size] + outs[:-1]
        return list(zip(ins, outs))


def make_config(preset: str, vocab_size: int, **overrides) -> AWDLSTMConfig:
    """The preset's model (``ulmfit.presets``) for a vocabulary of ``vocab_size``, ``overrides`` on top."""
    fields = {**preset_values(preset, "model"), **overrides, "vocab_size": vocab_size}
    return config_from_dict(AWDLSTMConfig, fields, source=f"model preset {preset!r}")


class EncoderOutput(NamedTuple):
    last_raw: Tensor  # [B, T, emb_size] last LSTM layer's output before output dropout
    last_dropped: Tensor  # the same after output_p locked dropout
    state: State  # not detached: callers detach between windows


def detach_state(state: State) -> State:
    """Cut the graph between BPTT windows while carrying the hidden state over."""
    return [(h.detach(), c.detach()) for h, c in state]


class AWDLSTM(nn.Module):
    """Embedding -> stacked weight-dropped LSTMs, with the AWD-LSTM dropouts in between."""

    def __init__(self, cfg: AWDLSTMConfig):
        super().__init__()
        if cfg.vocab_size <= cfg.pad_id:
            raise UlmfitError(f"AWDLSTMConfig: vocab_size {cfg.vocab_size} is too small (pad_id {cfg.pad_id})")
        self.cfg = cfg
        p = cfg.dropouts()
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.emb_size, padding_idx=cfg.pad_id)
        self.embed_p = p["embed_p"]
        self.input_dropout = LockedDropout(p["input_p"])
        self.lstms = nn.ModuleList(
            WeightDropLSTM(n_in, n_out, p["weight_p"]) for n_in, n_out in cfg.layer_sizes()
        )
        self.hidden_dropouts = nn.ModuleList(LockedDropout(p["hidden_p"]) for _ in range(cfg.n_layers - 1))
        self.output_dropout = LockedDropout(p["output_p"])
        self.reset_embedding()

    def reset_embedding(self) -> None:
        """AWD-LSTM's uniform(-0.1, 0.1) embedding init; the padding row stays zero."""
        with torch.no_grad():
            self.embedding.weight.uniform_(-0.1, 0.1)
            self.embedding.weight[self.cfg.pad_id].zero_()

    def forward(self, tokens: Tensor, state: State | None = None) -> EncoderOutput:
        x = embedding_dropout(tokens, self.embedding.weight, self.embed_p, self.training, self.cfg.pad_id)
        x = self.input_dropout(x)
        new_state: State = []
        for i, lstm in enumerate(self.lstms):
            x, layer_state = lstm(x, None if state is None else state[i])
            new_state.append(layer_state)
            if i < len(self.hidden_dropouts):
                x = self.hidden_dropouts[i](x)
        return EncoderOutput(x, self.output_dropout(x), new_state)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """One group per LSTM, bottom to top. The embedding is left to the model on top:
        the tied LM puts it in its top group, a classifier at the bottom."""
        return [list(lstm.parameters()) for lstm in self.lstms]


class LanguageModel(nn.Module):
    """AWD-LSTM encoder + an output layer whose word rows are the embedding matrix (tied).

    The forward pass stops at the last layer's output; ``loss`` scores the targets from it, so
    an adaptive softmax never builds the full [B, T, V] logits.
    """

    def __init__(self, cfg: AWDLSTMConfig):
        super().__init__()
        self.encoder = AWDLSTM(cfg)
        self.decoder = OutputLayer(cfg.emb_size, cfg.vocab_size, cfg.softmax_cutoffs)
        if cfg.tie_weights:
            self.decoder.weight = self.encoder.embedding.weight

    @property
    def cfg(self) -> AWDLSTMConfig:
        return self.encoder.cfg

    def forward(self, tokens: Tensor, state: State | None = None) -> EncoderOutput:
        return self.encoder(tokens, state)

    def token_nll(self, output: EncoderOutput, target: Tensor) -> Tensor:
        """[B, T] float32: -log p(target_t | tokens up to t)."""
        return self.decoder.nll(output.last_dropped, target)

    def loss(self, output: EncoderOutput, target: Tensor) -> Tensor:
        """Mean next-token cross-entropy, in float32 whatever precision the model runs in."""
        return self.token_nll(output, target).mean()

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Bottom to top: each LSTM, then embedding + output layer together (they are tied)."""
        top = [self.encoder.embedding.weight]
        top += [p for p in self.decoder.parameters() if p is not self.encoder.embedding.weight]
        return self.encoder.layer_groups() + [top]


def ar_tar_penalty(last_raw: Tensor, last_dropped: Tensor, alpha: float, beta: float) -> Tensor:
    """AR + TAR: keep the last layer's activations small and slowly changing over time.

    AR = alpha * mean(last_dropped ** 2); TAR = beta * mean((h_t - h_{t-1}) ** 2) on the
    raw (undropped) outputs. Computed in float32 so that bf16 autocast does not lose it.
    """
    penalty = last_raw.new_zeros((), dtype=torch.float32)
    if alpha:
        penalty = penalty + alpha * last_dropped.float().pow(2).mean()
    if beta and last_raw.size(1) > 1:
        penalty = penalty + beta * (last_raw[:, 1:] - last_raw[:, :-1]).float().pow(2).mean()
    return penalty
