"""The batch's view of :class:`autocrop.engine.Engine`: the same analysis and output options as ``autocrop crop``.

:class:`EngineSpec` is a small picklable description (it travels to Ray actors); calling it builds an
:class:`EngineAdapter` that holds one :class:`~autocrop.engine.Engine` -- one model per worker.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from autocrop.engine import FREE, Engine, OutputOptions, check_options, check_top, parse_ratios, ratios_for_size
from autocrop.errors import InputError
from autocrop.imageio import load_full


@dataclass(frozen=True)
class EngineSpec:
    """What every worker needs to build its engine: crop settings + model. Plain values only (picklable).

    ratios: as typed (``"16:9"``, ``"original"``, ``"free"``); empty = free (GAIC grid). top: crops per ratio.
    size: (w, h) pixels or None. quality: 1..100. format: output format or None (the input's). name: output
    file-name pattern (``autocrop crop --name``). preview: also write ``<stem>.preview.png``.
    model: weights path or None (packaged default). device: torch device. threads: torch intra-op threads or None.
    """

    ratios: tuple[str, ...] = ()
    top: int = 1
    size: tuple[int, int] | None = None
    quality: int = 95
    format: str | None = None
    name: str | None = None
    preview: bool = False
    model: str | None = None
    device: str = "cpu"
    threads: int | None = None

    def output_options(self) -> OutputOptions:
        """Validated output options (raises :class:`~autocrop.errors.InputError` with one line)."""
        base = OutputOptions(size=self.size, quality=self.quality, format=self.format)
        if self.name:
            if "{stem}" not in self.name:
                raise InputError(f"--name {self.name}: needs {{stem}} in a batch (else photos of one folder collide)")
            base = replace(base, name=self.name)
        return check_options(base, self.ratio_specs(), check_top(self.top))

    def ratio_specs(self) -> list:
        return ratios_for_size(parse_ratios(list(self.ratios) or None), self.size)

    def settings(self) -> dict[str, Any]:
        """The settings that change the outputs (hashed into every manifest record; see resume)."""
        return {
            "ratios": [s.label for s in self.ratio_specs()],
            "top": self.top,
            "size": list(self.size) if self.size else None,
            "quality": self.quality,
            "format": self.format,
            "name": self.output_options().name,
            "preview": self.preview,
            "model": str(Path(self.model).expanduser().resolve()) if self.model else None,
        }

    def __call__(self) -> "EngineAdapter":
        return EngineAdapter(self)


@dataclass
class _Analysis:
    decoded: Any
    result: Any


class EngineAdapter:
    """Implements :class:`autocrop.batch.worker.BatchEngine` with one :class:`Engine` (model loaded once)."""

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self.options = spec.output_options()
        self.ratios = spec.ratio_specs()
        self.top = check_top(spec.top)
        self.engine = Engine(model=spec.model, device=spec.device, threads=spec.threads)
        _ = self.engine.scorer  # load the model now (once per worker), not inside the first input's timing

    def analyze(self, path: Path) -> _Analysis:
        decoded = self.engine.decode(path)
        result = self.engine.analyze_decoded(decoded, self.ratios, self.top)
        return _Analysis(decoded, result)

    def describe(self, analysis: _Analysis) -> dict[str, list]:
        crops = analysis.result.crops
        return {
            "boxes": [list(c.box) for c in crops],
            "scores": [round(float(c.score), 6) for c in crops],
            "ratios": [c.ratio for c in crops],
        }

    def write(self, analysis: _Analysis, out_dir: Path, overwrite: bool, stem_tag: str | None = None) -> list[Path]:
        options = replace(self.options, out_dir=out_dir, overwrite=overwrite)
        if stem_tag:
            options = replace(options, name=options.name.replace("{stem}", "{stem}_" + stem_tag))
        result, decoded = analysis.result, analysis.decoded
        full = decoded.full
        if full is None and result.crops:
            full, _ = load_full(result.source)
        written = list(self.engine.write(result, options, full, self.ratios, (decoded.info.exif, decoded.info.icc)))
        if self.spec.preview:
            target = self.engine.preview_path(result, options)
            if stem_tag:
                target = target.with_name(f"{result.source.stem}_{stem_tag}.preview.png")
            written.append(self.engine.write_preview(result, target, full, overwrite=overwrite))
        return written


__all__ = ["EngineAdapter", "EngineSpec", "FREE"]
