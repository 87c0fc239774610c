"""training/extract_categories.py: precomputed categories for every format, read back by the datasets."""
import importlib.util
import json
from pathlib import Path

import pytest

from synseg_core.data import CocoCaptionDataset, JsonlCaptionDataset, SkippedSample, WebCaptionDataset
from test_data_fixtures import jpeg_bytes, make_builder, write_manifest, write_shard

# training/ is a folder of scripts, not an installed package: load the CLI from its file.
_CLI = Path(__file__).resolve().parents[2] / "training" / "extract_categories.py"
_spec = importlib.util.spec_from_file_location("synseg_extract_categories_cli", _CLI)
cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cli)

CAPTIONS = ["two dogs playing in the snow next to a red car", "a beautiful sunny day",
            "<PERSON> with a horse, a cow, a sheep, a goat and a dog on the grass"]
EXPECTED = [["dog", "snow", "car"], [], ["person", "horse", "cow", "sheep", "goat", "dog", "grass"]]


def _run(*args):
    return cli.main([*args, "--backend", "lexicon", "--no-progress"])


def test_jsonl_manifest_copy_gets_all_categories_and_absolute_paths(tmp_path, capsys):
    (tmp_path / "data" / "img").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "data" / "img" / f"{i}.jpg").write_bytes(jpeg_bytes(i))
    source = write_manifest(tmp_path / "data" / "m.jsonl",
                            [{"image": f"img/{i}.jpg", "caption": c} for i, c in enumerate(CAPTIONS)]
                            + ['{"broken": ', {"image": "img/0.jpg"}])
    output = tmp_path / "out" / "m.cat.jsonl"
    assert _run("--format", "jsonl", "--input", str(source), "--output", str(output)) == 0
    assert "4 samples, 2 with categories, 2 without (skipped in training), 1 unreadable" in capsys.readouterr().out
    lines = output.read_text().splitlines()
    rows = [json.loads(line) for i, line in enumerate(lines) if i != 3]
    assert [r["categories"] for r in rows] == [*EXPECTED, []]  # all candidates: no K limit when stored
    assert lines[3] == '{"broken": '  # copied unchanged; the dataset counts it as bad_record
    assert rows[0]["image"] == str((tmp_path / "data" / "img" / "0.jpg").resolve())
    dataset = JsonlCaptionDataset(output, make_builder(max_categories=4))
    items = [dataset[i] for i in range(len(dataset))]
    assert items[0].categories == ["dog", "snow", "car"] and items[2].categories == ["person", "horse", "cow", "sheep"]
    assert [i.reason for i in items if isinstance(i, SkippedSample)] == ["no_categories", "bad_record", "no_categories"]


def test_coco_copy_gets_categories_per_annotation(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "1.jpg").write_bytes(jpeg_bytes(1))
    coco = {"images": [{"id": 1, "file_name": "1.jpg"}],
            "annotations": [{"id": 7 + i, "image_id": 1, "caption": c} for i, c in enumerate(CAPTIONS)]}
    source = tmp_path / "captions.json"
    source.write_text(json.dumps(coco))
    output = tmp_path / "captions.cat.json"
    assert _run("--format", "coco", "--input", str(source), "--output", str(output)) == 0
    written = json.loads(output.read_text())
    assert [a["categories"] for a in written["annotations"]] == EXPECTED
    assert written["images"] == coco["images"]
    dataset = CocoCaptionDataset(output, tmp_path / "images", make_builder())
    assert dataset[0].categories == ["dog", "snow", "car"] and dataset[1].reason == "no_categories"


def test_webdataset_sidecars_are_written_per_shard_and_used_by_the_dataset(tmp_path, capsys):
    shards = tmp_path / "shards"
    shards.mkdir()
    write_shard(shards / "00000.tar", [{"__key__": f"a{i}", "jpg": jpeg_bytes(i), "txt": c}
                                       for i, c in enumerate(CAPTIONS)])
    write_shard(shards / "00001.tar", [{"__key__": "b0", "jpg": jpeg_bytes(9),
                                        "json": {"caption": "a cat on a sofa"}}])
    out = tmp_path / "cats"
    assert _run("--format", "webdataset", "--input", str(shards / "{00000..00001}.tar"), "--output", str(out)) == 0
    assert "4 samples, 3 with categories, 1 without" in capsys.readouterr().out
    sidecar = [json.loads(line) for line in (out / "00000.jsonl").read_text().splitlines()]
    assert sidecar == [{"key": f"a{i}", "categories": e} for i, e in enumerate(EXPECTED)]
    assert json.loads((out / "00001.jsonl").read_text()) == {"key": "b0", "categories": ["cat", "sofa"]}
    # The dataset takes the sidecar over its own extraction: make the difference visible.
    (out / "00001.jsonl").write_text(json.dumps({"key": "b0", "categories": ["zebra"]}) + "\n")
    dataset = WebCaptionDataset(str(shards), make_builder(), categories_dir=out, shuffle_shards=False,
                                repeat=False)
    found = {s.key: s.categories for s in dataset if not isinstance(s, SkippedSample)}
    assert found == {"a0": ["dog", "snow", "car"], "a2": ["person", "horse", "cow", "sheep"], "b0": ["zebra"]}


def test_errors_are_reported_without_a_traceback(tmp_path, capsys):
    assert _run("--format", "jsonl", "--input", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o")) == 2
    assert "extract_categories: error: caption manifest not found" in capsys.readouterr().err
    source = write_manifest(tmp_path / "m.jsonl", [{"image": "a.jpg", "caption": "a dog"}])
    assert _run("--format", "jsonl", "--input", str(source), "--output", str(source)) == 2
    assert "would overwrite the manifest being read" in capsys.readouterr().err
    assert source.read_text().strip() == '{"image": "a.jpg", "caption": "a dog"}'
    assert cli.main(["--format", "jsonl", "--input", str(source), "--output", str(tmp_path / "o.jsonl"),
                     "--backend", "lexicon", "--extra-vocabulary", str(tmp_path / "none.txt")]) == 2
    assert "vocabulary file not found" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_unknown_format_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--format", "parquet", "--input", "x", "--output", "y"])
    assert "invalid choice: 'parquet'" in capsys.readouterr().err


def test_precompute_rejects_an_unknown_format(tmp_path):
    from synseg_core.data.precompute import precompute_categories

    with pytest.raises(ValueError, match=r"unknown data format 'parquet'; valid formats: \['jsonl', 'coco', "):
        precompute_categories("parquet", tmp_path / "x", tmp_path / "y", cli.CategoryExtractor(
            cli.CategoryConfig(backend="lexicon")), progress=False)
