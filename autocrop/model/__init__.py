"""The view-ranking model: backbone, heads, config, weight files and cards, and the inference wrapper.

Importing this package is light; torch is imported when a model is built or loaded.
:func:`resolve_weights` / :func:`peek_input_short_side` / :func:`resolve_device` are the one place
that turns ``model`` / ``device`` settings into a weights file and a torch device.
"""

from autocrop.model.config import ModelConfig
from autocrop.model.resolve import peek_input_short_side, resolve_device, resolve_weights
from autocrop.model.scorer import ViewScorer, load_scorer

__all__ = ["ModelConfig", "ViewScorer", "load_scorer", "peek_input_short_side", "resolve_device", "resolve_weights"]
