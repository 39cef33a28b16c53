"""The AWD-LSTM language model and its regularizers."""
from .awd_lstm import (
    AWDLSTM,
    AWDLSTMConfig,
    EncoderOutput,
    LanguageModel,
    State,
    ar_tar_penalty,
    detach_state,
    make_config,
)
from .softmax import OutputLayer, cluster_bounds
from .dropout import LockedDropout, WeightDropLSTM, embedding_dropout, locked_dropout

__all__ = [
    "AWDLSTM",
    "AWDLSTMConfig",
    "EncoderOutput",
    "LanguageModel",
    "State",
    "ar_tar_penalty",
    "detach_state",
    "make_config",
    "OutputLayer",
    "cluster_bounds",
    "LockedDropout",
    "WeightDropLSTM",
    "embedding_dropout",
    "locked_dropout",
]
