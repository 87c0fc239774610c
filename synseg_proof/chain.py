"""The proof-of-learning chain: the paper's three stages in miniature on synthetic data, scored honestly.

Stage 1 = the tiny CLIP (the bundled one, or trained here with `synseg_proof.synthetic.clip_train`); stage 2 = the
decoder and FiLM trained with masks on the SOURCE domain, whose vocabulary leaves some categories out entirely,
and handed on as a CLIPSeg state dict; stage 3 = caption-only MCCL on the TARGET domain through the project's
trainer, started through the CLIPSeg import. Learning rate, extension weights, checkpoint step and background
threshold are chosen on the validation split; the held-out split is only scored. Every step leaves its result
on disk, so a re-run skips what is finished and resumes what was interrupted. The report is rewritten after every
scored row (marked partial until the last one).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Callable

import torch

import synseg_core
from synseg_core.model.checkpoint import save_checkpoint
from synseg_core.model.clipseg_import import import_clipseg_decoder
from synseg_core.config import SynSegConfig, load_config_file
from synseg_core.model.synseg import SynSeg
from .synthetic import SceneGenerator, write_split
from .synthetic.clip_model import CLIP_CONFIG_FILE, CLIP_WEIGHTS_FILE, FAST_OVERRIDES, ClipPretrainConfig, \
    config_with_overrides
from .synthetic.clip_train import METRICS_FILE, train_clip
from .synthetic.writers import MANIFEST_FILE, read_manifest
from .config import BUNDLED_STAGE1, ChainConfig
from .heldout import SUMMARY_FILE, custom_dataset, evaluate_heldout, floor_summary, validation_threshold
from .masks import split_vocabulary
from .report import assess_targets, write_results
from .rows import KEY_VARIANTS, Row, stage3_rows, stage3_run
from .stage3 import Stage3Paths, best_eval, checkpoint_of, run_stage3
from .supervised import CLIPSEG_FILE, train_supervised

log = logging.getLogger(__name__)

MODEL_CONFIG_FILE = "model_config.json"
CAPTIONS_FILE = "captions.jsonl"
INIT_DIR = "init"
# (domains, kind, label mode, seed offset) of each split; "things" = background + thing classes (VOC-like).
SPLITS: dict[str, tuple[tuple[str, ...], str, str, int]] = {
    "stage1_captions": (("source", "target"), "captions", "all", 0),
    "source_masks": (("source",), "segmentation", "all", 1),
    "target_train": (("target",), "segmentation", "all", 2),
    "target_val": (("target",), "segmentation", "things", 3),
    "target_test": (("target",), "segmentation", "things", 4),
}
CLIPSEG_LAYER_FRACTIONS = (0.25, 0.5, 0.75)  # CLIPSeg taps blocks 3, 6, 9 of ViT-B/16's 12


def clipseg_layers(depth: int) -> list[int]:
    """Blocks tapped by the decoder at CLIPSeg's relative depths (12 blocks -> [3, 6, 9], 6 -> [1, 3, 4])."""
    return sorted({int(depth * f) for f in CLIPSEG_LAYER_FRACTIONS})


def proof_model_config(clip_config: dict, cfg: ChainConfig) -> dict:
    """The SynSeg model config of the miniature: the stage-1 CLIP (weights next to the file) and the decoder, at the
    CLIP's input size (whole images at inference: the test images have that size)."""
    size, patch = clip_config["vision_cfg"]["image_size"], clip_config["vision_cfg"]["patch_size"]
    decoder = dataclasses.asdict(cfg.decoder)
    if decoder["upsampler"] == "refined" and (patch // 4) ** 2 != patch:
        # synseg_core.model.decoder's refined upsampler scales by (patch // 4) ** 2, which is the patch size only for
        # CLIPSeg's 16-px patches; other patch sizes get CLIPSeg's simple transposed convolution (scale = patch).
        decoder["upsampler"] = "simple"
    return {
        "name": "synthetic-proof",
        "backbone": {"model_name": None, "pretrained": None, "clip_config": clip_config, "weights": CLIP_WEIGHTS_FILE,
                     "extract_layers": clipseg_layers(clip_config["vision_cfg"]["layers"])},
        "decoder": decoder,
        "preprocess": {"train_size": size},
        "inference": {"short_side": size, "window": None, "stride": size // 2, "templates": "single"},
    }


class ProofChain:
    """Runs the chain into `out` (see the module docstring). `progress` shows the tqdm bars."""

    def __init__(self, cfg: ChainConfig, out: str | Path, progress: bool = True):
        self.cfg, self.out, self.progress = cfg, Path(out), progress
        self.data = self.out / "data"
        self.rows: dict[str, dict] = {}

    # ---------------------------------------------------------------------------------------------- plumbing
    def _step(self, name: str, work: Callable[[], dict]) -> dict:
        """Run `work` once: its result is stored under steps/ and read back on later runs."""
        marker = self.out / "steps" / f"{name}.json"
        if marker.is_file():
            return json.loads(marker.read_text())
        log.info("proof chain: step %s", name)
        result = work()
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(result, indent=1) + "\n")
        return result

    @property
    def model_config_path(self) -> Path:
        return self.out / "stage1" / MODEL_CONFIG_FILE

    def model_config(self) -> SynSegConfig:
        return load_config_file(self.model_config_path)

    def run(self) -> dict:
        """Run (or finish) the whole chain; returns the final results."""
        threads = torch.get_num_threads()
        torch.set_num_threads(self.cfg.threads)
        try:
            self.stage1_info = self._step("stage1", self.stage1)
            self._step("data", self.make_data)
            self.stage2_info = self._step("stage2", self.stage2)
            for row in self.baseline_rows():
                self.score(row)
            self.sweep_info = self._step("sweep", self.sweep)
            chosen = {k: (self.sweep_info[k]["chosen"]["lr"], self.sweep_info[k]["chosen"]["weight"])
                      for k in ("area", "absent")}
            for row in stage3_rows(self.cfg.stage3, self.sweep_info["chosen_lr"], **chosen):
                self.score(row)
            self.score(Row("ceiling", "supervised ceiling: the same decoder trained on target masks of all "
                                      "categories", "ceiling"))
            return self.report(partial=False)
        finally:
            torch.set_num_threads(threads)

    # ------------------------------------------------------------------------------------------------ stages
    def stage1(self) -> dict:
        """The frozen CLIP: copy the bundled one, or pretrain one on generated captions."""
        dest = self.out / "stage1"
        dest.mkdir(parents=True, exist_ok=True)
        bundled = BUNDLED_STAGE1
        s1 = self.cfg.stage1
        if s1.bundled and (bundled / CLIP_WEIGHTS_FILE).is_file():
            for name in (CLIP_WEIGHTS_FILE, CLIP_CONFIG_FILE, METRICS_FILE):
                if (bundled / name).is_file():
                    shutil.copy2(bundled / name, dest / name)
            source = str(bundled)
        else:
            settings = config_with_overrides(ClipPretrainConfig(), {**(FAST_OVERRIDES if s1.fast else {}),
                                                                   **s1.overrides})
            split = self._split("stage1_captions", s1.captions, settings.image_size)
            train_clip(settings, [split], dest, progress=self.progress)
            source = "trained here: " + json.dumps(settings.to_dict())
        clip_config = json.loads((dest / CLIP_CONFIG_FILE).read_text())
        self.model_config_path.write_text(json.dumps(proof_model_config(clip_config, self.cfg), indent=1) + "\n")
        metrics = dest / METRICS_FILE
        return {"source": source, "metrics": json.loads(metrics.read_text()) if metrics.is_file() else None}

    @property
    def image_size(self) -> int:
        """The stage-1 CLIP's input size: the size of every generated image."""
        return self.model_config().preprocess.train_size

    def _split(self, name: str, count: int, image_size: int | None = None) -> Path:
        domains, kind, label_mode, offset = SPLITS[name]
        folder = self.data / name
        if not (folder / MANIFEST_FILE).is_file():
            generator = SceneGenerator(list(domains), image_size or self.image_size, self.cfg.data.seed + offset)
            write_split(folder, generator, count, kind, label_mode, progress=self.progress)
        return folder

    def make_data(self) -> dict:
        """The source mask split, the target training split (+ a caption-only manifest), validation and test."""
        d = self.cfg.data
        for name, count in (("source_masks", d.source_masks), ("target_train", d.target_train),
                            ("target_val", d.target_val), ("target_test", d.target_test)):
            self._split(name, count)
        # Stage 3 sees captions only: its manifest has no masks and no category lists (they are extracted from
        # the caption text by the trainer, as from CC12M captions).
        lines = [{"image": str(Path(r["image"]).relative_to(self.data / "target_train")), "caption": r["caption"]}
                 for r in read_manifest(self.data / "target_train")]
        (self.data / "target_train" / CAPTIONS_FILE).write_text("".join(json.dumps(x) + "\n" for x in lines))
        return {name: str(self.data / name) for name in SPLITS if (self.data / name).is_dir()}

    def stage2(self) -> dict:
        """Masks on the source domain -> a CLIPSeg state dict -> the stage-3 starting model (through the import)."""
        stage2 = self.out / "stage2"
        train_supervised(self.model_config(), self.data / "source_masks", stage2, self.cfg.stage2, self.progress)
        init = stage2 / INIT_DIR
        if not (init / "config.json").is_file():
            torch.manual_seed(self.cfg.stage2.seed)
            model = SynSeg(self.model_config())
            import_clipseg_decoder(model, stage2 / CLIPSEG_FILE)
            save_checkpoint(model, init, extra={"stage": "stage-2 init via the CLIPSeg import"})
        _, masked = split_vocabulary(self.data / "source_masks")
        test_classes = custom_dataset(self.data / "target_test").classes[1:]
        return {"init": str(init), "clipseg_weights": str(stage2 / CLIPSEG_FILE), "masked": masked,
                "never_masked": [c for c in test_classes if c not in masked]}

    def stage3_paths(self, config: str | None = None) -> Stage3Paths:
        return Stage3Paths(config=Path(config or self.cfg.stage3.config), model_config=self.model_config_path,
                           clipseg_weights=Path(self.stage2_info["clipseg_weights"]),
                           captions=self.data / "target_train" / CAPTIONS_FILE, image_size=self.image_size,
                           root=self.out / "stage3")

    def _train(self, run) -> dict:
        val = custom_dataset(self.data / "target_val")
        return run_stage3(run, self.stage3_paths(), val, self.cfg.eval.thresholds)

    def sweep(self) -> dict:
        """Learning rate of the paper's recipe, then each extension's (learning rate, weight), on validation."""
        s3 = self.cfg.stage3
        seed = s3.seeds[0]
        lr_runs = {f"{lr:g}": self._train(stage3_run("film", lr, seed))["evals"] for lr in s3.lrs}
        chosen_lr = max(s3.lrs, key=lambda lr: max(e["val_miou"] for e in lr_runs[f"{lr:g}"]))
        _, init_val = validation_threshold(self.data / "target_val", self.stage2_info["init"], "synseg",
                                           self.cfg.eval.thresholds)
        result: dict[str, Any] = {"runs": lr_runs, "chosen_lr": chosen_lr, "init_val_miou": init_val}
        for variant, weights in (("area", s3.area_weights), ("absent", s3.absent_weights)):
            grid = [(lr, w) for lr in s3.extension_lrs for w in weights]
            target = s3.area_target if variant == "area" else None
            scores = [best_eval(self._train(stage3_run(variant, lr, seed, w, target)))["val_miou"] for lr, w in grid]
            best = max(range(len(grid)), key=lambda i: scores[i])
            result[variant] = {"val_miou": [{"lr": lr, "weight": w, "val_miou": v} for (lr, w), v in zip(grid, scores)],
                               "chosen": {"lr": grid[best][0], "weight": grid[best][1]}}
        return result

    # ---------------------------------------------------------------------------------------------- scoring
    def baseline_rows(self) -> list[Row]:
        return [Row("floor", "all-background floor", "floor"),
                Row("maskclip", "MaskCLIP-style baseline (training-free, stage-1 CLIP)", "maskclip"),
                Row("init", "stage-2 init alone (source masks, CLIPSeg import)", "init")]

    def _model_of(self, row: Row) -> tuple[str, str, dict]:
        """(checkpoint, method, row facts) of a non-floor row, training it first if needed."""
        if row.run is not None:
            record = self._train(row.run)
            best = best_eval(record)
            lr = next(o.split("=", 1)[1] for o in row.run.overrides if o.startswith("optim.lr="))
            return (str(checkpoint_of(self.stage3_paths(), row.run.name, best["step"])), "synseg",
                    {"step": best["step"], "lr": lr, "train_command": record["command"]})
        if row.variant == "ceiling":
            final = train_supervised(self.model_config(), self.data / "target_train", self.out / "ceiling",
                                     self.cfg.ceiling, self.progress)
            return str(final), "synseg", {"step": self.cfg.ceiling.schedule.max_steps}
        return self.stage2_info["init"], "maskclip" if row.variant == "maskclip" else "synseg", {}

    def score(self, row: Row) -> dict:
        """Train (if needed) and score one row, then rewrite the partial report."""
        folder = self.out / "eval" / row.row_id
        never = self.stage2_info["never_masked"]
        entry: dict[str, Any] = {"row_id": row.row_id, "label": row.label, "variant": row.variant, "seed": row.seed}
        if (folder / SUMMARY_FILE).is_file() and (folder / "row.json").is_file():
            entry = json.loads((folder / "row.json").read_text())
        elif row.variant == "floor":
            entry["test"] = floor_summary(self.data / "target_test", never, folder)
        else:
            checkpoint, method, facts = self._model_of(row)
            threshold, val_miou = validation_threshold(self.data / "target_val", checkpoint, method,
                                                       self.cfg.eval.thresholds)
            entry.update(facts, checkpoint=checkpoint, method=method, val_miou=val_miou)
            entry["test"] = evaluate_heldout(self.data / "target_test", checkpoint, method, threshold, never, folder,
                                             self.cfg.eval.grid_images)
        if "test" in entry:
            (folder / "row.json").write_text(json.dumps(entry, indent=1) + "\n")
        self.rows[row.row_id] = entry
        self.report(partial=True)
        return entry

    def report(self, partial: bool) -> dict:
        """Write results.json / results.md / grid.png under report/ from the rows scored so far."""
        val, test = (custom_dataset(self.data / n) for n in ("target_val", "target_test"))
        results = {
            "partial": partial, "val_images": len(val), "test_images": len(test),
            "never_masked": self.stage2_info["never_masked"], "masked": self.stage2_info["masked"],
            "stage1": self.stage1_info, "lr_sweep": getattr(self, "sweep_info", None),
            "extension_sweeps": {k: self.sweep_info[k] for k in ("area", "absent")} if hasattr(self, "sweep_info")
            else None,
            "rows": list(self.rows.values()),
            "targets": assess_targets(self.rows, KEY_VARIANTS, self.cfg.stage3.seeds),
            "config": self.cfg.to_dict(),
        }
        seed = self.cfg.stage3.seeds[0]
        columns = [(label, self.out / "eval" / rid) for rid, label in
                   (("init", "stage-2 init"), (f"film_s{seed}", "MCCL (paper)"), (f"area_s{seed}", "+ area prior"),
                    (f"absent_s{seed}", "+ absent neg."), ("ceiling", "ceiling"))]
        write_results(results, self.out / "report", columns, self.cfg.eval.grid_images)
        return results
