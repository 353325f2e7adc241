"""The view-ranking model: backbone, heads, config, weight files and the inference wrapper.

Importing this package is light; torch is imported when a model is built or loaded.
"""

from autocrop.model.config import ModelConfig
from autocrop.model.scorer import ViewScorer, load_scorer

__all__ = ["ModelConfig", "ViewScorer", "load_scorer"]
