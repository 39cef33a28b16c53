"""ulmfit: ULMFiT-style transfer learning for text classification, as a staged pipeline."""
import os

# oneDNN (torch's CPU LSTM) caches a compiled primitive, scratch memory included, for every input
# shape it meets, up to 1,024 of them. AWD-LSTM's windows vary in length, so nearly every step
# meets a new shape: pretraining grew by about 9 MB a step, to 5.4 GB. A small cache holds memory
# flat at the same speed (README, "Pretraining speed"). Read by oneDNN at its first LSTM, so it
# works as long as ulmfit is imported before any training; a value set by the user is kept.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8")

__version__ = "0.1.0"
