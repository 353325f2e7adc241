"""CropSettings (the one table of defaults and validation), ratios and sizes, and output planning."""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import pytest

from autocrop.errors import OutputError, UsageError
from autocrop.output import check_outputs, name_problem, output_size, plan_outputs, render_name
from autocrop.ratios import FREE, parse_ratio, parse_ratios, parse_size
from autocrop.results import Crop, CropResult
from autocrop.settings import DEFAULT_NAME, DEFAULT_NAME_MULTI, CropSettings, check_device, check_format


def test_defaults_and_derivations() -> None:
    plain = CropSettings()
    assert plain.ratios == (FREE,) and plain.top == 1 and plain.quality == 95 and plain.name == DEFAULT_NAME
    assert plain.diversity == 0.7 and plain.refine and not plain.overwrite
    multi = CropSettings.build(ratio="16:9,1:1", top=2)
    assert [r.label for r in multi.ratios] == ["16:9", "1:1"] and multi.name == DEFAULT_NAME_MULTI
    assert multi.with_(ratios=parse_ratios("4:5")).name == DEFAULT_NAME, "back to the single-ratio default"
    sized = CropSettings.build(size="1920x1080")
    assert sized.ratios[0].label == "16:9" and sized.size == (1920, 1080)
    assert CropSettings.build(format=".JPG").format == "JPEG"
    assert pickle.loads(pickle.dumps(multi)) == multi
    with pytest.raises(AttributeError):
        multi.top = 3  # type: ignore[misc]


@pytest.mark.parametrize("values,fragment", [
    ({"top": 0}, "top 0"),
    ({"top": 2.5}, "top 2.5"),
    ({"quality": 101}, "quality 101"),
    ({"quality": True}, "quality True"),
    ({"format": "gif"}, "format 'gif'"),
    ({"diversity": 1.5}, "diversity 1.5"),
    ({"name": ""}, "name ''"),
    ({"name": "../{stem}"}, "not a path"),
    ({"name": "{stem}.{colour}"}, "unknown field"),
    ({"name": "{stem:d}"}, "cannot be filled in"),
    ({"name": "{stem}", "top": 2}, "needs {rank}"),
    ({"name": "{stem}.{rank}", "ratio": "1:1,16:9"}, "needs {ratio}"),
    ({"size": "100x100", "ratio": "16:9"}, "does not have the asked ratio"),
    ({"size": "100x100", "ratio": "original"}, "cannot be combined"),
    ({"size": "16x9", "long_edge": 100}, "cannot be combined"),
    ({"long_edge": 0}, "long_edge 0"),
    ({"colour": "red"}, "unknown setting"),
])
def test_validation_names_the_parameter(values: dict, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        CropSettings.build(**values)
    message = str(info.value)
    assert fragment in message and "--" not in message and "\n" not in message


def test_ratios_and_sizes() -> None:
    assert parse_ratio("16:9").label == "16:9" and parse_ratio("32x18").label == "16:9"
    assert parse_ratio("1.91:1").label == "191:100" and parse_ratio("original").kind == "original"
    assert parse_ratios(None) == (FREE,)
    assert [s.label for s in parse_ratios(["16:9,1:1", "16:9"])] == ["16:9", "1:1"]
    for bad in ("16:0", "abc", "-1:2", "0:3", "1:-2", "100:1", ""):
        with pytest.raises(UsageError, match="ratio"):
            parse_ratio(bad)
    assert parse_size("1920x1080") == (1920, 1080) == parse_size((1920, 1080))
    for bad_size in ("big", "0x5", "70000x5", (1, 2, 3), (1.5, 2)):
        with pytest.raises(UsageError, match="size"):
            parse_size(bad_size)  # type: ignore[arg-type]
    assert check_format(None) is None and check_device("CUDA:1") == "cuda:1"
    with pytest.raises(UsageError, match="device 'gpu'"):
        check_device("gpu")


@pytest.mark.parametrize("pattern,w,problem", [
    ("{w:c}{w:c}{h:c}escaped_{stem}", 46, "not a plain file name"),  # 46 '.', 47 '/' -> ../escaped
    ("{stem}", 1, None),
    ("{w:c}{stem}", 46, "hidden"),
    ("{stem:>300}", 1, "longer than 255 bytes"),
])
def test_rendered_names_are_checked(pattern: str, w: int, problem: str | None) -> None:
    if problem is None:
        assert render_name(pattern, "photo", 1, "free", "jpg", w, 47) == "photo"
        return
    with pytest.raises(UsageError, match=problem):
        render_name(pattern, "photo", 1, "free", "jpg", w, 47)
    assert name_problem("") == "an empty file name" and name_problem("a/b") and name_problem("..")


def test_output_size_shrinks_only_unless_upscale() -> None:
    assert output_size(1600, 900, CropSettings.build(size="320x180")) == (320, 180)
    assert output_size(160, 90, CropSettings.build(size="320x180")) == (160, 90)
    assert output_size(160, 90, CropSettings.build(size="320x180", upscale=True)) == (320, 180)
    assert output_size(1000, 500, CropSettings.build(long_edge=200)) == (200, 100)
    assert output_size(100, 50, CropSettings.build(long_edge=200)) == (100, 50)
    assert output_size(500, 1000, CropSettings.build(long_edge=200, upscale=True)) == (100, 200)


def _result(*boxes: tuple[int, int, int, int]) -> CropResult:
    crops = tuple(Crop(rank=i + 1, ratio="free", box=b, box_norm=(0, 0, 1, 1), width=b[2] - b[0],
                       height=b[3] - b[1], score=1.0 - i) for i, b in enumerate(boxes))
    return CropResult(source="a.png", width=100, height=100, format="PNG", crops=crops)


def test_plan_outputs_is_pure_and_check_outputs_guards(tmp_path: Path) -> None:
    settings = CropSettings.build(top=2, preview=True)
    planned = plan_outputs(_result((0, 0, 50, 50), (10, 10, 90, 90)), settings, tmp_path, "a", tmp_path / "a.png")
    assert [c.path for c in planned.crops] == [tmp_path / "a.crop1.png", tmp_path / "a.crop2.png"]
    assert planned.preview == tmp_path / "a.preview.png" and list(tmp_path.iterdir()) == []
    check_outputs(planned, [tmp_path / "a.png"], overwrite=False)
    (tmp_path / "a.crop2.png").write_bytes(b"mine")
    with pytest.raises(OutputError, match="already exists") as info:
        check_outputs(planned, [], overwrite=False)
    assert info.value.path == tmp_path / "a.crop2.png" and info.value.errno is None
    check_outputs(planned, [], overwrite=True)
    with pytest.raises(OutputError, match="is an input photo"):
        check_outputs(planned, [tmp_path / "a.crop2.png"], overwrite=True)
    twins = _result((0, 0, 5, 5), (1, 1, 6, 6))
    twins = twins.with_crops([twins.crops[0], replace(twins.crops[0], box=(1, 1, 6, 6))])
    with pytest.raises(UsageError, match="same file name"):
        plan_outputs(twins, CropSettings.build(top=2), tmp_path, "a")
