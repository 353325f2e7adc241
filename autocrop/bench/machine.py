"""The facts recorded with every bench report about where it ran: machine, threads, memory, timing summaries."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

import numpy as np

from autocrop.system import available_cpus


def peak_rss_mib() -> float | None:
    """Peak resident memory of this process in MiB (``getrusage`` maxrss), ``None`` where unavailable."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024, 1)


def machine_info() -> dict[str, Any]:
    """Platform, CPU and torch thread facts recorded with every report."""
    import torch

    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "cpus_available": available_cpus(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def percentiles(values: list[float]) -> dict:
    """Median, 90th percentile and mean of ``values`` (ms), rounded to 0.01; None each when there are none."""
    if not values:
        return {"median": None, "p90": None, "mean": None}
    arr = np.asarray(values, dtype=np.float64)
    return {
        "median": round(float(np.median(arr)), 2),
        "p90": round(float(np.percentile(arr, 90)), 2),
        "mean": round(float(arr.mean()), 2),
    }
