"""BPT3C: backpropagation through time for text classification.

A document is read in chunks of ``bptt`` tokens, the LSTM state carried from chunk to chunk, and
only its last ``max_len`` tokens are pooled and backpropagated through, so training memory is
bounded by ``max_len`` tokens whatever the document length.

Exact semantics, for a right-padded batch whose longest document has ``L`` tokens:

* Pooling: each document is pooled over its own last ``max_len`` real tokens. This depends only
  on the document, never on its batch-mates, so a prediction is the same alone or in any batch.
* Gradient: positions ``[L - max_len, L)`` of the batch run with autograd, in chunks that start
  exactly at ``L - max_len``; everything before runs under ``torch.no_grad()`` and builds no
  graph. Inside that window the state is not detached between chunks (full backpropagation over
  the window; it costs no extra memory since the pooled outputs keep each chunk's graph anyway).
  So the longest document gets gradient through exactly its last ``max_len`` tokens and a shorter
  one through a suffix of its last ``max_len`` tokens (none if it ends before ``L - max_len``;
  length-sorted batches keep that rare).
* Each document starts from a zero state at position 0 and leaves the batch at the first chunk
  that starts at or after its end: the encoder runs only on the documents still being read, so a
  batch costs about its documents' own tokens, not its size times its longest document's length.
  Inside its last chunk a document runs on over its right padding, which pooling masks out. Its
  features are those of a batch of its own (to float rounding); dropout draws masks only for the
  documents of each call.
* Memory: the window's activations grow with batch size x window length (about 24 KB per token
  for the ``cpu`` preset's encoder under bf16: 2.2 GB for 64 documents of 1,400 tokens). Above
  ``checkpoint_tokens`` of them, each chunk of the window keeps only its input and output and is
  run again in the backward pass (activation checkpointing, with its random state restored, so
  the dropout masks and the gradients are the same): one chunk's activations at a time, for one
  more forward pass of the window.
"""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .pooling import ConcatPooler


def chunk_spans(length: int, bptt: int, max_len: int) -> list[tuple[int, int, bool]]:
    """Split ``[0, length)`` into ``(start, end, keeps_grad)`` chunks of at most ``bptt`` tokens.

    The chunks with ``keeps_grad`` cover exactly the last ``max_len`` positions.
    """
    if bptt < 1 or max_len < 1:
        raise ValueError(f"bptt ({bptt}) and max_len ({max_len}) must be positive")
    grad_start = max(0, length - max_len)
    no_grad = [(s, min(s + bptt, grad_start), False) for s in range(0, grad_start, bptt)]
    with_grad = [(s, min(s + bptt, length), True) for s in range(grad_start, length, bptt)]
    return no_grad + with_grad


def bpt3c_features(encoder: nn.Module, tokens: Tensor, lengths: Tensor, bptt: int,
                   max_len: int, checkpoint_tokens: int = 0) -> Tensor:
    """Concat-pooled features [B, 3H] of a right-padded batch read the BPT3C way.

    Args:
        encoder: called as ``encoder(tokens [B, t], state)`` and returning an object with
            ``last_raw`` [B, t, H] (last layer's undropped output) and ``state``
            (``None`` = zero state). The head applies its own dropout, so pooling uses
            ``last_raw``.
        tokens: [B, T] token ids, document i in ``tokens[i, :lengths[i]]``, padding after it.
        lengths: [B] number of real tokens per document.
        bptt: chunk length.
        max_len: how many final tokens of each document are pooled and backpropagated through.
        checkpoint_tokens: when the gradient window holds more tokens than this (B x its length),
            its chunks are recomputed in the backward pass instead of stored; 0: never.
    """
    if tokens.dim() != 2 or lengths.shape != tokens.shape[:1]:
        raise ValueError(f"tokens {tuple(tokens.shape)} and lengths {tuple(lengths.shape)} do not match")
    ends = lengths.cpu()  # decides which documents each chunk reads, with no device sync per chunk
    lengths = lengths.to(tokens.device)
    longest = int(ends.max()) if len(ends) else 0
    if longest < 1 or longest > tokens.shape[1]:
        raise ValueError(f"longest length {longest} does not fit tokens of width {tokens.shape[1]}")
    window_tokens = len(lengths) * min(longest, max_len)
    recompute = torch.is_grad_enabled() and 0 < checkpoint_tokens < window_tokens
    pool_start = (lengths - max_len).clamp(min=0)
    pooler = ConcatPooler()
    state = None
    reading = torch.arange(len(ends))  # the documents not ended yet
    rows = None  # ``reading`` on the device once a document has ended; None while all are read
    for start, end, keeps_grad in chunk_spans(longest, bptt, max_len):
        going_on = ends[reading] > start
        if not bool(going_on.all()):
            reading = reading[going_on]
            rows, kept = reading.to(tokens.device), going_on.to(tokens.device)
            state = None if state is None else [(h[:, kept], c[:, kept]) for h, c in state]
        chunk = tokens[:, start:end] if rows is None else tokens[rows, start:end]
        if keeps_grad and recompute:
            last_raw, state = checkpointed_chunk(encoder, chunk, state)
        else:
            with contextlib.nullcontext() if keeps_grad else torch.no_grad():
                out = encoder(chunk, state)
            last_raw, state = out.last_raw, out.state
        if rows is not None:  # ended documents pool nothing more: zeros under a False mask
            last_raw = last_raw.new_zeros(len(lengths), *last_raw.shape[1:]).index_copy(0, rows, last_raw)
        positions = torch.arange(start, end, device=tokens.device)
        pooled = (positions >= pool_start[:, None]) & (positions < lengths[:, None])
        pooler.update(last_raw, pooled)
    return pooler.result()


def checkpointed_chunk(encoder: nn.Module, chunk: Tensor, state: list[tuple[Tensor, Tensor]] | None
                       ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
    """``encoder(chunk, state)``'s last layer output and state, its activations recomputed in the
    backward pass rather than kept (the state goes in and out flattened: checkpoint takes and
    returns tensors)."""
    def run(chunk: Tensor, *flat_state: Tensor) -> tuple[Tensor, ...]:
        out = encoder(chunk, unflatten_state(flat_state) if flat_state else None)
        return (out.last_raw, *flatten_state(out.state))

    flat_in = () if state is None else flatten_state(state)
    last_raw, *flat_out = checkpoint(run, chunk, *flat_in, use_reentrant=False, preserve_rng_state=True)
    return last_raw, unflatten_state(flat_out)


def flatten_state(state: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, ...]:
    """[(h0, c0), (h1, c1), ...] -> (h0, c0, h1, c1, ...)."""
    return tuple(t for layer in state for t in layer)


def unflatten_state(flat: tuple[Tensor, ...] | list[Tensor]) -> list[tuple[Tensor, Tensor]]:
    """[h0, c0, h1, c1, ...] -> [(h0, c0), (h1, c1), ...]."""
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
