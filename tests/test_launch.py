"""The console script's launcher (autocrop.launch) and the heap it faults in ahead of a crop
(autocrop.commands.allocator.prefault_heap): which invocations crop, that it imports nothing heavy, and that
the memory really becomes resident (in a child process: the settings are process-wide)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from autocrop.launch import VERBS, may_crop


def test_which_invocations_may_crop() -> None:
    for argv in (["photo.jpg"], ["crop", "a.jpg"], ["-"], ["doctr"], ["my photos/x.png", "--top", "2"]):
        assert may_crop(argv), argv
    for argv in ([], ["batch", "album"], ["doctor"], ["config", "show"], ["--help"], ["-h"], ["--version"]):
        assert not may_crop(argv), argv


def test_the_launcher_lists_the_registered_verbs() -> None:
    from autocrop import cli

    assert sorted(cli.verbs()) == sorted(VERBS)


def test_the_launcher_imports_nothing_heavy() -> None:
    code = ("import sys, autocrop.launch; "
            "print([m for m in ('typer', 'click', 'numpy', 'PIL', 'onnxruntime', 'torch') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's heap settings (other systems: a no-op)")
def test_prefaulted_heap_is_resident_and_reused() -> None:
    code = """
import re
from autocrop.commands.allocator import prefault_heap

def rss_kb():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1))

before = rss_kb()
thread = prefault_heap(64 << 20)
if thread is None:
    print("not glibc")
else:
    thread.join()
    grown = rss_kb() - before
    data = b"x" * (24 << 20)  # written in full, from the kept heap: resident already, so RSS hardly grows
    print(grown, rss_kb() - before - grown)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if out.stdout.strip() == "not glibc":
        pytest.skip("the C library is not glibc")
    grown, again = (int(v) for v in out.stdout.split())
    assert grown >= 60 * 1024, out.stdout  # 64 MB faulted in and kept after free()
    assert again < 8 * 1024, out.stdout  # a 24 MB allocation reused it (fresh memory would add 24 MB)
