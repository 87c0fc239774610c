"""Caption data for training: category extraction from captions."""
from .categories import CategoryConfig, CategoryExtractor

__all__ = ["CategoryConfig", "CategoryExtractor"]
