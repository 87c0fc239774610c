"""synseg_core: SynSeg open-vocabulary segmentation without ROS (model, training, evaluation, export, backends).

Heavy optional parts (ONNX export, ONNX Runtime, TensorRT, training, evaluation) live in submodules and import lazily.
"""
from .config import ConfigError, InferenceConfig, SynSegConfig, get_model_config, list_models
from .inference import CategoryError, ImageError, Outputs, SegmentationResult, Segmenter
from .model import CheckpointError, SynSeg, create_model, load_checkpoint, save_checkpoint

__version__ = "0.1.0"

__all__ = [
    "CategoryError", "CheckpointError", "ConfigError", "ImageError", "InferenceConfig", "Outputs", "SegmentationResult",
    "Segmenter", "SynSeg", "SynSegConfig", "create_model", "get_model_config", "list_models", "load_checkpoint",
    "save_checkpoint",
]
