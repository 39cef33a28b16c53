"""Regenerate tests/fixtures/fastai_tiny: a tiny AWD-LSTM language model made and saved by fastai.

Run with a Python that has fastai (it is never a dependency of ulmfit; the tests read only the
files written here)::

    /path/to/fastai-venv/bin/python scripts/make_fastai_fixture.py [OUT_DIR]

Writes, in OUT_DIR (default tests/fixtures/fastai_tiny):
    lm.pth         fastai's save_model with its optimizer, i.e. {"model": state_dict, "opt": ...}
    vocab.pkl      the vocabulary list as fastai's make_vocab builds it (xxfake padding included)
    input_ids.npy  a fixed [2, 11] batch of token ids (fastai's ids)
    logits.npy     fastai's eval-mode logits on it, float32 [2, 11, vocab]
    versions.json  fastai and torch versions that made them
"""
from __future__ import annotations

import json
import pickle
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import fastai
from fastai.learner import save_model
from fastai.optimizer import Adam
from fastai.text.all import AWD_LSTM, awd_lstm_lm_config, get_language_model, make_vocab

WORDS = ("the a of to and in is was for on that with as by it at from his he her an were are which "
         "this be has had or first one their its new after who they have but not she two been "
         "other when there all % during into school time may years more most only over city").split()
SIZES = {"emb_sz": 8, "n_hid": 12, "n_layers": 3}


def main(out: Path) -> None:
    torch.manual_seed(0)
    vocab = make_vocab(Counter({w: 100 - i for i, w in enumerate(WORDS)}), min_freq=1)
    model = get_language_model(AWD_LSTM, len(vocab), config={**awd_lstm_lm_config, **SIZES})
    with torch.no_grad():  # fastai zeroes the decoder bias; move every weight so all of them matter
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    opt = Adam(list(model.parameters()), lr=1e-3)
    out.mkdir(parents=True, exist_ok=True)
    save_model(out / "lm.pth", model, opt, with_opt=True)
    with open(out / "vocab.pkl", "wb") as f:
        pickle.dump(list(vocab), f)

    real = torch.tensor([i for i, t in enumerate(vocab) if t != "xxfake"])  # padding rows are never input
    ids = real[torch.randint(0, len(real), (2, 11), generator=torch.Generator().manual_seed(1))]
    ids[:, 0] = vocab.index("xxbos")
    model.eval()
    model.reset()
    with torch.no_grad():
        logits = model(ids)[0]
    np.save(out / "input_ids.npy", ids.numpy().astype(np.int64))
    np.save(out / "logits.npy", logits.float().numpy())
    (out / "versions.json").write_text(json.dumps({"fastai": fastai.__version__, "torch": torch.__version__,
                                                   **SIZES, "vocab": len(vocab)}, indent=2) + "\n")
    print(f"{out}: vocab {len(vocab)}, logits {tuple(logits.shape)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "tests/fixtures/fastai_tiny")
