"""Text handling: input readers, tokenization rules, tokenizers and vocabularies."""
