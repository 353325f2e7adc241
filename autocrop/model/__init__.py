"""The view-ranking model: backbone, heads, config, weight files and cards, and the inference wrappers.

Importing this package is light; torch is imported when a torch model is built or loaded, onnxruntime when
an ONNX Runtime scorer is (:func:`load_scorer` picks the runtime; docs/runtime.md).
:func:`resolve_weights` / :func:`peek_input_short_side` / :func:`resolve_device` are the one place
that turns ``model`` / ``device`` settings into a weights file and a torch device.
"""

from autocrop.model.config import ModelConfig
from autocrop.model.onnx_scorer import OnnxScorer
from autocrop.model.resolve import peek_input_short_side, resolve_device, resolve_weights
from autocrop.model.scorer import ViewScorer, load_scorer

__all__ = ["ModelConfig", "OnnxScorer", "ViewScorer", "load_scorer", "peek_input_short_side", "resolve_device",
           "resolve_weights"]
