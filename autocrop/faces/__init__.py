"""Subjects of a photo: faces found by the packaged YuNet detector and the user's hints, and the rule they impose.

* :mod:`autocrop.faces.detect`: :class:`Face`, :class:`YuNetDetector` (onnxruntime, own decoding and NMS).
* :mod:`autocrop.faces.model`: the detector file, its card and sha256, the onnxruntime session.
* :mod:`autocrop.faces.onnx_shape`: frees the model's declared 640x640 input (protobuf, in memory).
* :mod:`autocrop.faces.hints`: ``keep`` boxes and the ``focus`` point, checked and resolved to pixels.
* :mod:`autocrop.faces.rules`: grown faces, cuts, the main face and its group, penalties, extra views.
* :mod:`autocrop.faces.apply`: the rule inside a crop run (used by :class:`autocrop.Cropper`).

Importing this package is light (no onnxruntime until a detector first runs).
"""

from __future__ import annotations

from autocrop.faces.detect import Face, FaceDetector, YuNetDetector

__all__ = ["Face", "FaceDetector", "YuNetDetector"]
