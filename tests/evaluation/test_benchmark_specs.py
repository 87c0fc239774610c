"""The shipped benchmark data files and their loader."""
import json

import pytest

from synseg_core.evaluation import benchmarks
from synseg_core.evaluation.benchmarks import list_benchmarks, load_benchmark

EXPECTED = {  # name: (classes, background first, first class, last class) as in the mmseg/TCL lists
    "voc21": (21, True, "background", "tvmonitor"),
    "voc20": (20, False, "aeroplane", "tvmonitor"),
    "context59": (59, False, "aeroplane", "wood"),
    "context60": (60, True, "background", "wood"),
    "coco_object": (81, True, "background", "toothbrush"),
    "coco_stuff171": (171, False, "person", "wood"),
    "cityscapes19": (19, False, "road", "bicycle"),
    "ade150": (150, False, "wall", "flag"),
}


def test_every_benchmark_loads_with_its_class_list():
    assert list_benchmarks() == sorted(EXPECTED)
    for name, (n, bg, first, last) in EXPECTED.items():
        spec = load_benchmark(name)
        assert (spec.num_classes, spec.background_first, spec.classes[0], spec.classes[-1]) == (n, bg, first, last)
        assert spec.layout.ignore_index == 255
        assert len(set(spec.classes)) == n


def test_reduce_zero_label_only_where_background_is_dropped():
    assert {n for n in EXPECTED if load_benchmark(n).layout.reduce_zero_label} == {"voc20", "context59", "ade150"}


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown benchmark dataset 'voc'; valid names are \['ade150'"):
        load_benchmark("voc")


def test_malformed_data_files_fail_loudly(tmp_path, monkeypatch):
    good = json.loads((benchmarks.BENCHMARK_DIR / "voc21.json").read_text())
    monkeypatch.setattr(benchmarks, "BENCHMARK_DIR", tmp_path)
    load_benchmark.cache_clear()
    try:
        bad_layout = {**good, "layout": {**good["layout"], "img_sufix": ".jpg"}}
        (tmp_path / "a.json").write_text(json.dumps(bad_layout))
        with pytest.raises(ValueError, match=r"unknown keys \['img_sufix'\]"):
            load_benchmark("a")
        (tmp_path / "b.json").write_text(json.dumps({**good, "num_classes": 20}))
        with pytest.raises(ValueError, match="num_classes=20 but 21 class names"):
            load_benchmark("b")
    finally:
        load_benchmark.cache_clear()
