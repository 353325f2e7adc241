"""The pixels the crops are cut from: the full-size photo, decoded in a background thread while the photo
is analysed, or decoded at a JPEG DCT scale when every output is much smaller than its crop.

Pillow releases the GIL while it decodes, so on two cores the full decode of a large JPEG (130 ms for
24 MP) runs beside the model load and the analysis instead of before them.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from autocrop.io import decode as dec

if TYPE_CHECKING:
    from PIL import Image

    from autocrop.results import CropResult
    from autocrop.settings import CropSettings


class BackgroundDecode:
    """Decodes ``decoded``'s photo at full size into ``decoded.full`` in a thread, started at once."""

    def __init__(self, decoded: dec.ReducedImage) -> None:
        self.decoded = decoded
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="autocrop-full-decode", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        try:
            self.decoded.full, _ = dec.load_full(self.decoded.info.source)
        except BaseException as err:  # noqa: BLE001 - raised again by wait(), in the caller's thread
            self.error = err

    def wait(self, raise_error: bool = True) -> None:
        """Wait for the decode; raise its error (e.g. :class:`InputError`) in this thread unless told not to."""
        self.thread.join()
        if self.error is not None and raise_error:
            raise self.error


def full_image(decoded: dec.ReducedImage) -> Image.Image:
    """The full-size, EXIF-oriented photo of ``decoded`` (decoded once, then kept in ``decoded.full``)."""
    if decoded.full is None:
        decoded.full, _ = dec.load_full(decoded.info.source)
    return decoded.full


def pixels_to_cut(decoded: dec.ReducedImage, sized: CropResult, settings: CropSettings) -> tuple[Image.Image, float]:
    """(image to cut the crops of ``sized`` from, full-size pixels per pixel of that image).

    A JPEG whose crops all shrink by 2x or more (``size``/``long_edge``) is decoded at the smallest DCT
    scale that still covers every output (:func:`autocrop.output.draft_factor`): scale 2, 4 or 8.
    Otherwise the full-size photo, scale 1.
    """
    from autocrop.output import draft_factor

    factor = 1 if decoded.full is not None or decoded.info.format != "JPEG" else draft_factor(sized, settings)
    if factor > 1:
        image, info = dec.load_full(decoded.info.source, reduce=factor)
        if image.size == (-(-info.width // factor), -(-info.height // factor)):
            return image, float(factor)  # libjpeg's scaled pixel i covers full-size pixels [i*f, (i+1)*f)
    return full_image(decoded), 1.0
