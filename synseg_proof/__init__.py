"""The proof of learning: mask-supervised decoder training (stage 2 and the supervised ceiling), the
three-stage chain on synthetic data, its scoring and its report. ``synseg_proof/cli/`` holds the command lines."""
from .chain import ProofChain
from .config import ChainConfig, fast_chain, full_chain
from .masks import MaskBatch, MaskPairs
from .supervised import SupervisedConfig, export_clipseg_decoder, train_supervised

__all__ = ["ChainConfig", "MaskBatch", "MaskPairs", "ProofChain", "SupervisedConfig", "export_clipseg_decoder",
           "fast_chain", "full_chain", "train_supervised"]
