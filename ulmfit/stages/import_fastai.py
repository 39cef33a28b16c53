"""The ``import_fastai`` stage: fastai's pretrained AWD-LSTM (e.g. WikiText-103's ``lstm_fwd.pth``
with ``itos_wt103.pkl``) as a regular language-model folder, ready for ``ulmfit finetune``.

fastai v1 and v2 save the same module tree, so one table of key patterns maps both: ``0`` is the
encoder (``encoder``, its dropout wrapper's copy ``encoder_dp``, the weight-dropped LSTMs
``rnns.K`` whose hidden-to-hidden weight is the ``_raw`` one), ``1`` the decoder. Sizes come from
the tensors (WT103's hidden size is 1150), the output layer is a full softmax, as fastai's.

Nothing in the two files is trusted: the weights load with ``torch.load(weights_only=True)``, the
vocabulary with an unpickler that builds no object at all (a list of str is all it can hold).
"""
from __future__ import annotations

import dataclasses
import io
import pickle
import re
from pathlib import Path

import torch
from torch import Tensor

from ..artefacts import CONFIG, METRICS
from ..config import save_config
from ..errors import UlmfitError
from ..files import staging_dir, write_json
from ..model.awd_lstm import LanguageModel, make_config
from ..model_folder import first_line, require
from ..text.special import SPECIAL_TOKENS
from ..text.tokenizers import TokenizerSettings
from ..text.vocab import Vocab
from .common import preset_options
from .lm import LMTrainConfig, map_vocab_rows, save_lm_weights

# fastai v2 pads its vocabulary to a multiple of 8 with these; they have rows but mean nothing
FAKE_TOKEN = "xxfake"
# fastai key -> this model's key ("{k}": the LSTM's index); None: a copy of a weight mapped elsewhere
KEY_PATTERNS: list[tuple[re.Pattern, str | None]] = [(re.compile(p), k) for p, k in [
    (r"0\.encoder\.weight", "encoder.embedding.weight"),
    (r"0\.(?:encoder_dp\.emb|encoder_with_dropout\.embed)\.weight", None),  # the embedding again
    (r"0\.rnns\.(\d+)\.(?:module\.)?weight_hh_l0_raw", "encoder.lstms.{k}.weight_hh_l0"),
    (r"0\.rnns\.(\d+)\.module\.weight_hh_l0", None),  # the last dropped-out copy of the _raw weight
    (r"0\.rnns\.(\d+)\.module\.(weight_ih_l0|bias_ih_l0|bias_hh_l0)", "encoder.lstms.{k}.{name}"),
    (r"1\.decoder\.weight", "decoder.weight"),
    (r"1\.decoder\.bias", "decoder.bias"),
]]


class _DiscardedObject:
    """Stands in for fastcore's ``L`` in a fastai v2 checkpoint's optimizer state (``learn.save``
    keeps it by default), so ``weights_only`` loading accepts the file; it runs nothing and the
    optimizer state is dropped anyway."""

    def __setstate__(self, state) -> None:
        pass


IGNORED_GLOBALS = [(_DiscardedObject, "fastcore.foundation.L")]



class _NoObjectsUnpickler(pickle.Unpickler):
    """An unpickler that refuses every class and function: only plain lists, strings, numbers
    and dicts can come out of it, so a crafted pickle cannot run code."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"it refers to {module}.{name}")


def read_fastai_vocab(path: Path) -> list[str]:
    """fastai's vocabulary pickle (``itos``), refused unless it is a list of strings."""
    try:
        itos = _NoObjectsUnpickler(io.BytesIO(require(path).read_bytes())).load()
    except Exception as e:  # crafted, truncated or not a pickle at all
        raise UlmfitError(f"{path}: not a fastai vocabulary (a pickled list of str): {e}") from None
    if not isinstance(itos, list) or not itos or not all(isinstance(t, str) for t in itos):
        raise UlmfitError(f"{path}: not a fastai vocabulary: expected a non-empty list of str, "
                          f"got {type(itos).__name__}")
    return itos


def load_fastai_state(path: Path) -> dict[str, Tensor]:
    """The model's state_dict from a fastai checkpoint: a bare state_dict, or v2's
    ``{"model": ..., "opt": ...}`` (the optimizer state is dropped)."""
    try:
        with torch.serialization.safe_globals(IGNORED_GLOBALS):
            state = torch.load(require(path), map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file, or it holds objects other than tensors and containers
        raise UlmfitError(f"{path}: not a weights-only fastai checkpoint ({first_line(e)})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UlmfitError(f"{path}: not a fastai language model's state_dict")
    return state


def map_fastai_keys(state: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """``state`` renamed from fastai's module tree to :class:`LanguageModel`'s; unknown keys refused."""
    mapped, unknown = {}, []
    for key, tensor in state.items():
        for pattern, target in KEY_PATTERNS:
            match = pattern.fullmatch(key)
            if match:
                if target is not None:
                    groups = match.groups()
                    mapped[target.format(k=groups[0] if groups else "", name=groups[-1] if groups else "")] = tensor
                break
        else:
            unknown.append(key)
    if unknown:
        raise UlmfitError(f"{source}: not a fastai AWD-LSTM language model; unknown keys {unknown[:5]}"
                          f"{' ...' if len(unknown) > 5 else ''}")
    missing = [k for k in ("encoder.embedding.weight", "encoder.lstms.0.weight_ih_l0", "decoder.weight")
               if k not in mapped]
    if missing:
        raise UlmfitError(f"{source}: not a fastai AWD-LSTM language model; nothing maps onto {missing}")
    if "decoder.bias" not in mapped:  # fastai's out_bias=False
        mapped["decoder.bias"] = mapped["decoder.weight"].new_zeros(mapped["decoder.weight"].size(0))
    return mapped


def architecture(state: dict[str, Tensor]) -> dict:
    """The sizes of the model ``state`` (this model's keys) holds: embedding, hidden, layers, tying."""
    n_layers = len({k.split(".")[2] for k in state if k.startswith("encoder.lstms.")})
    embedding = state["encoder.embedding.weight"]
    hidden = state["encoder.lstms.0.weight_hh_l0"].size(1) if n_layers > 1 else embedding.size(1)
    return {"emb_size": embedding.size(1), "hidden_size": hidden, "n_layers": n_layers,
            "tie_weights": torch.equal(embedding, state["decoder.weight"]), "softmax_cutoffs": ()}


def ulmfit_itos(fastai_itos: list[str]) -> list[str]:
    """This project's vocabulary for fastai's: the special tokens first at their fixed ids (fastai
    v1 orders them differently), then fastai's other tokens in order, without the fake ones."""
    seen = set(SPECIAL_TOKENS)
    itos = list(SPECIAL_TOKENS)
    for token in fastai_itos:
        if token not in seen and not token.startswith(FAKE_TOKEN):
            seen.add(token)
            itos.append(token)
    return itos


VOCAB_ROWS = ("encoder.embedding.weight", "decoder.weight", "decoder.bias")


def import_fastai(weights: str, vocab: str, out: str, backwards: bool = False, preset: str = "paper") -> dict:
    """Turn fastai's pretrained AWD-LSTM language model into a language-model folder.

    The folder holds model.pt, encoder.pt, config.json, vocab.json and tokenizer.json like one
    written by ``ulmfit pretrain``, so ``ulmfit finetune --pretrained OUT`` starts from it. Sizes
    come from the weights; tokens are mapped by their text (fastai's special tokens are this
    project's; a special token fastai's vocabulary lacks starts at the mean row).

    Args:
        weights: fastai's checkpoint, e.g. lstm_fwd.pth (a state_dict, or fastai v2's
            {"model": ..., "opt": ...}); read with torch.load(weights_only=True).
        vocab: fastai's vocabulary pickle, e.g. itos_wt103.pkl: a list of token strings; any other
            content is refused unread.
        out: the new language-model folder; must not exist or be empty.
        backwards: the weights are fastai's backward model (lstm_bwd.pth).
        preset: training defaults of ``finetune`` on this model and its dropouts ("paper", "cpu",
            "tiny"); the sizes are always the weights'.

    Returns:
        What was imported, as written to metrics.json.
    """
    weights_path, vocab_path, out_dir = Path(weights), Path(vocab), Path(out)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UlmfitError(f"{out_dir}: already exists and is not empty; choose another --out")
    fastai_itos = read_fastai_vocab(vocab_path)
    state = map_fastai_keys(load_fastai_state(weights_path), str(weights_path))
    if state["encoder.embedding.weight"].size(0) != len(fastai_itos):
        raise UlmfitError(f"{vocab_path}: {len(fastai_itos)} tokens, but the embedding in {weights_path} has "
                          f"{state['encoder.embedding.weight'].size(0)} rows; give the vocabulary it was trained with")
    itos = ulmfit_itos(fastai_itos)
    state = {k: map_vocab_rows(fastai_itos, itos, v) if k in VOCAB_ROWS else v for k, v in state.items()}
    fields = preset_options(preset, "pretrain", backwards=backwards)
    model_cfg = make_config(preset, len(itos), **architecture(state))
    cfg = LMTrainConfig(**fields, preset=preset, pretrained=str(weights_path), model=model_cfg)
    model = LanguageModel(cfg.model)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # e.g. an LSTM whose sizes do not chain
        raise UlmfitError(f"{weights_path}: its tensors do not form an AWD-LSTM ({first_line(e)})") from None

    summary = {"weights": str(weights_path), "vocab": str(vocab_path), "fastai_vocab_size": len(fastai_itos),
               "vocab_size": len(itos), "dropped_fake_tokens": sum(t.startswith(FAKE_TOKEN) for t in fastai_itos),
               "added_special_tokens": [t for t in SPECIAL_TOKENS if t not in fastai_itos],
               **{k: v for k, v in dataclasses.asdict(cfg.model).items() if k in ("emb_size", "hidden_size", "n_layers", "tie_weights")},
               "backwards": backwards}
    with staging_dir(out_dir) as folder:
        save_config(cfg, folder / CONFIG)
        Vocab(itos).save(folder)
        TokenizerSettings().save(folder)
        save_lm_weights(folder, model.state_dict())
        write_json(folder / METRICS, summary)
    return summary

