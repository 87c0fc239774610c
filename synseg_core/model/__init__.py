"""The model: frozen CLIP backbone, FiLM-conditioned decoder, Feature Synergy Structure, checkpoints and imports."""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .synseg import SynSeg, create_model

__all__ = ["CheckpointError", "SynSeg", "create_model", "load_checkpoint", "save_checkpoint"]
