"""fastai-style special tokens. They come first in every vocabulary, at these fixed ids."""

UNK = "xxunk"    # token not in the vocabulary
PAD = "xxpad"    # padding
BOS = "xxbos"    # beginning of a document (stream)
EOS = "xxeos"    # end of a document
FLD = "xxfld"    # start of a field when a document has several
REP = "xxrep"    # xxrep n c: character c repeated n times
WREP = "xxwrep"  # xxwrep n w: word w repeated n times
UP = "xxup"      # next word was all upper case
MAJ = "xxmaj"    # next word was capitalised

SPECIAL_TOKENS = [UNK, PAD, BOS, EOS, FLD, REP, WREP, UP, MAJ]
UNK_ID, PAD_ID, BOS_ID, EOS_ID, FLD_ID, REP_ID, WREP_ID, UP_ID, MAJ_ID = range(len(SPECIAL_TOKENS))
