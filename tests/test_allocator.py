"""The command line's allocator settings (batch): applied in a process of its own, never by the library."""

from __future__ import annotations

import subprocess
import sys


def test_keep_freed_memory_in_a_fresh_process() -> None:
    code = ("import sys; from PIL import Image; before = Image.core.get_blocks_max(); "
            "from autocrop.commands.allocator import keep_freed_memory, PILLOW_BLOCKS_KEPT; "
            "applied = keep_freed_memory(); "
            "assert applied['pillow'] and Image.core.get_blocks_max() >= PILLOW_BLOCKS_KEPT, applied; "
            "assert applied['glibc'] or not sys.platform.startswith('linux') or 'musl' in sys.version, applied; "
            "im = Image.new('RGB', (4000, 3000)); del im; im = Image.new('RGB', (4000, 3000)); print('ok', before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def test_library_import_changes_no_allocator_setting() -> None:
    code = ("from PIL import Image; before = Image.core.get_blocks_max(); from autocrop import Cropper; "
            "import autocrop.cropper, autocrop.batch.run; print(Image.core.get_blocks_max() == before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "True", out.stderr
