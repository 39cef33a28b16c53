"""ulmfit: ULMFiT-style transfer learning for text classification, as a staged pipeline."""
__version__ = "0.1.0"
