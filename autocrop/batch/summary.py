"""Progress while a batch runs (a rich bar on a terminal, plain log lines otherwise) and the summary at its end.

Every path shown goes through :func:`display`: a file name that is not valid UTF-8 is shown with ``\\xNN``
escapes instead of making the terminal (or the JSON summary) fail.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any


def display(text: str) -> str:
    """``text`` printable anywhere: bytes of a non-UTF-8 file name (lone surrogates) as ``\\xNN`` escapes."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass
class Tally:
    """The outcome of one run (what :func:`autocrop.batch.run.run_batch` returns).

    total: inputs found; ok / failed: inputs cropped / failed in this run; done_before: inputs skipped because
    the manifest says they are done (resume); ignored: non-image files; outputs: files written.
    failures: (input or folder, one-line reason), also for folders that could not be read.
    interrupted: the run was stopped (Ctrl-C, SIGTERM) before every input was done.
    dry_run: nothing was done; ``planned`` lists (input, output folder) of what would be.
    manifest_bad_lines: manifest lines skipped because they could not be read (cut by a kill, edited).
    Paths are as :func:`display` shows them.
    """

    total: int = 0
    ok: int = 0
    failed: int = 0
    done_before: int = 0
    ignored: int = 0
    outputs: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    first_result: float | None = None
    finished: float | None = None
    interrupted: bool = False
    dry_run: bool = False
    planned: list[tuple[str, str]] = field(default_factory=list)
    out: str = ""
    manifest: str = ""
    manifest_bad_lines: int = 0

    @property
    def complete(self) -> bool:
        """True when every input is done: nothing failed, no folder was unreadable, not interrupted."""
        return not self.interrupted and not self.failures

    def as_dict(self) -> dict[str, Any]:
        """The outcome as JSON values (``autocrop batch --json``)."""
        elapsed = (self.finished or time.perf_counter()) - self.started
        data: dict[str, Any] = {
            "total": self.total, "ok": self.ok, "failed": self.failed, "done_before": self.done_before,
            "ignored": self.ignored, "outputs": self.outputs, "seconds": round(elapsed, 3),
            "interrupted": self.interrupted, "dry_run": self.dry_run, "out": self.out, "manifest": self.manifest,
            "manifest_bad_lines": self.manifest_bad_lines,
            "failures": [{"path": path, "error": error} for path, error in self.failures],
        }
        if self.dry_run:
            data["planned"] = [{"path": path, "out_dir": out_dir} for path, out_dir in self.planned]
        return data

    def add(self, record: dict[str, Any]) -> None:
        """Count one manifest record."""
        if self.first_result is None:
            self.first_result = time.perf_counter()
        if record.get("status") == "ok":
            self.ok += 1
            self.outputs += len(record.get("outputs") or [])
        else:
            self.failed += 1
            self.failures.append((display(str(record.get("path", "?"))), display(str(record.get("error") or
                                                                                     "unknown error"))))

    @property
    def processed(self) -> int:
        return self.ok + self.failed

    def rate(self) -> float:
        """Inputs per second over the run's wall time so far (model loading included)."""
        end = self.finished or time.perf_counter()
        elapsed = end - self.started
        return self.processed / elapsed if elapsed > 0 else 0.0


class Progress:
    """A rich progress bar (images/s, ETA) when ``stream`` is a terminal, else one plain line per input."""

    def __init__(self, total: int, stream: Any = None, force_plain: bool | None = None, quiet: bool = False) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.quiet = quiet
        is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.plain = (not is_tty) if force_plain is None else force_plain
        self._bar: Any = None
        self._task: Any = None
        self._count = 0
        self._t0 = time.perf_counter()

    def __enter__(self) -> Progress:
        self._t0 = time.perf_counter()
        if self.quiet or self.total == 0:
            return self
        if not self.plain:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                ProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress
            from rich.text import Text

            class RateColumn(ProgressColumn):
                def render(self, task: Any) -> Text:
                    speed = task.speed
                    return Text(f"{speed:5.2f} img/s" if speed else "  -.-- img/s", style="cyan")

            self._bar = RichProgress(
                TextColumn("[bold]cropping"),
                BarColumn(),
                MofNCompleteColumn(),
                RateColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=False,
                speed_estimate_period=60.0,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("crop", total=self.total)
        return self

    def advance(self, record: dict[str, Any]) -> None:
        """Report one finished input."""
        self._count += 1
        if self.quiet or self.total == 0:
            return
        if self._bar is not None:
            self._bar.advance(self._task)
            if record.get("status") != "ok":
                from rich.text import Text

                self._bar.console.print(Text.assemble(("failed", "red"), f" {display(str(record.get('path')))}: "
                                                      f"{display(str(record.get('error')))}"), highlight=False)
            return
        elapsed = time.perf_counter() - self._t0
        rate = self._count / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self._count) / rate if rate > 0 else 0.0
        status = record.get("status", "?")
        detail = f" error: {display(str(record.get('error')))}" if status != "ok" else ""
        width = len(str(self.total))
        print(
            f"[{self._count:>{width}}/{self.total}] {status:<6} {display(str(record.get('path')))}{detail} "
            f"({rate:.2f} img/s, ETA {eta:.0f} s)",
            file=self.stream,
            flush=True,
        )

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def format_summary(tally: Tally, max_failures: int = 20) -> str:
    """The end-of-run report: counts, speed, failures (first ``max_failures``), where outputs and manifest are."""
    elapsed = (tally.finished or time.perf_counter()) - tally.started
    lines = []
    if tally.dry_run:
        lines.append(
            f"autocrop batch: dry run -- {tally.total} inputs: {len(tally.planned)} to crop, {tally.done_before} "
            f"already done (resume), {tally.ignored} non-image files ignored; nothing written"
        )
    else:
        head = "interrupted" if tally.interrupted else "done"
        lines.append(
            f"autocrop batch: {head} -- {tally.total} inputs: {tally.ok} cropped ({tally.outputs} files), "
            f"{tally.failed} failed, {tally.done_before} already done (resume), {tally.ignored} non-image files "
            f"ignored; {elapsed:.1f} s, {tally.rate():.2f} img/s"
        )
    if tally.failures:
        lines.append(f"failed inputs ({len(tally.failures)}):")
        for path, error in tally.failures[:max_failures]:
            lines.append(f"  {path}: {error}")
        if len(tally.failures) > max_failures:
            lines.append(f"  ... and {len(tally.failures) - max_failures} more (see the manifest)")
    lines.append(f"outputs: {tally.out}")
    lines.append(f"manifest: {tally.manifest}")
    if tally.manifest_bad_lines:
        lines.append(f"manifest: {tally.manifest_bad_lines} unreadable line(s) skipped (cut short or of another "
                     "shape); the inputs they named are processed again")
    if tally.interrupted:
        lines.append("run the same command again to continue where it stopped")
    elif tally.failures and not tally.dry_run:
        lines.append("failed inputs are retried when you run the same command again")
    return "\n".join(lines)
