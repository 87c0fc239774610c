"""synseg_core: SynSeg open-vocabulary segmentation without ROS (model, training, evaluation, export, backends)."""
__version__ = "0.1.0"
