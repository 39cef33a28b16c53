"""Text classifier on top of a pretrained AWD-LSTM encoder: BPT3C reading, concat pooling, head.

The stage functions (train, evaluate, predict, ensemble) live in ``ulmfit.stages``; this package
holds the pure building blocks they are made of.
"""
