r"""Zero-shot mIoU of a SynSeg checkpoint (or the MaskCLIP baseline) on a benchmark or a custom dataset.

Examples:
    python training/evaluate.py --dataset voc21 --data-root data/VOCdevkit/VOC2012 --checkpoint runs/synseg
    python training/evaluate.py --dataset context59 --data-root data/VOCdevkit/VOC2010 --checkpoint runs/synseg --pamr
    python training/evaluate.py --dataset custom --data-root robot_data --classes robot_data/classes.txt \
        --background-first --checkpoint runs/synseg --method maskclip

Outputs (in --out): <checkpoint>_<dataset>_<method>_<protocol>[_pamr].json / .md / _samples.png, where
<checkpoint> names a training run's checkpoint as <run>-<folder> (e.g. tiny-step_00000020, tiny-best). An existing
result is never replaced without --overwrite. The JSON carries every setting, the command line, git commit,
package versions and device, and the checkpoint's provenance.
Exit status: 0 done, 2 bad input (names, paths, a checkpoint, a runtime that is not there, an output folder that
cannot be written or a result that exists); every check on the output runs before the evaluation.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from synseg_core.deploy.backends.base import BackendError
from synseg_core.deploy.capabilities import PRECISIONS, describe_precisions
from synseg_core.evaluation.datasets import list_datasets
from synseg_core.evaluation.evaluator import (METHODS, OVERRIDABLE, PROTOCOLS, EvalSettings, resolve_device,
                                              run_evaluation)
from synseg_core.evaluation.reporting import output_paths, write_report
from synseg_core.outputs import OutputError, check_writable_dir, describe_os_error

WHOLE_IMAGE = "none"


def _window(value: str) -> int | None:
    if value.lower() == WHOLE_IMAGE:
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"window must be an integer or '{WHOLE_IMAGE}', got {value!r}") from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=list_datasets(), help="dataset name")
    p.add_argument("--data-root", required=True, help="dataset root folder (mmseg layout, or images/ + annotations/)")
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint folder/.safetensors, model-config .json, or bundled config name (tiny-test)")
    p.add_argument("--classes", help="class-list file for --dataset custom (one name per line)")
    p.add_argument("--background-first", action="store_true", help="custom dataset: the first class is background")
    p.add_argument("--protocol", default="tcl", choices=sorted(PROTOCOLS),
                   help="inference settings: tcl (unified protocol) or model (the checkpoint's own)")
    p.add_argument("--method", default="synseg", choices=METHODS, help="the model, or the MaskCLIP baseline")
    p.add_argument("--pamr", action="store_true", help="refine probabilities with PAMR (reported separately)")
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    p.add_argument("--num-visualize", type=int, default=8, help="images in the qualitative grid (0 = no grid)")
    p.add_argument("--out", default="eval_results", help="output folder for the JSON, table and PNG grid")
    p.add_argument("--overwrite", action="store_true", help="replace an existing result of the same name")
    # Overrides are absent from the namespace unless given, so "--window none" (whole image) is a real override.
    g = p.add_argument_group("inference overrides (default: the protocol's)", argument_default=argparse.SUPPRESS)
    g.add_argument("--short-side", type=int)
    g.add_argument("--window", type=_window, help=f"sliding-window size, or '{WHOLE_IMAGE}' for the whole image")
    g.add_argument("--stride", type=int)
    g.add_argument("--templates", help="prompt-template set (e.g. tcl_custom, single, imagenet80)")
    g.add_argument("--background-threshold", type=float)
    g.add_argument("--mask-threshold", type=float)
    r = p.add_argument_group("runtime")
    r.add_argument("--device", default="auto", help="auto (CUDA when present, else cpu), cpu, cuda or cuda:N")
    r.add_argument("--backend", default="torch", help="image-path backend for --method synseg")
    r.add_argument("--precision", default="fp32", choices=PRECISIONS, help=describe_precisions())
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> EvalSettings:
    """EvalSettings from parsed arguments (overrides only where given)."""
    overrides = {key: getattr(args, key) for key in OVERRIDABLE if hasattr(args, key)}
    return EvalSettings(
        dataset=args.dataset, data_root=args.data_root, checkpoint=args.checkpoint, protocol=args.protocol,
        method=args.method, pamr=args.pamr, limit=args.limit, num_visualize=args.num_visualize,
        classes_file=args.classes, background_first=args.background_first, overrides=overrides,
        device=resolve_device(args.device), backend=args.backend, precision=args.precision,
    )


def check_outputs(settings: EvalSettings, out: str, overwrite: bool) -> None:
    """Before evaluating: the output folder can be written, and no result of this name exists (or --overwrite).

    Raises:
        OutputError: naming the folder or the existing files.
    """
    check_writable_dir(out, what="--out")
    existing = [str(p) for p in output_paths(settings, out).values() if p.exists()]
    if existing and not overwrite:
        raise OutputError(f"{', '.join(existing)} already exist(s); pass --overwrite to replace, or choose another "
                          "--out")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = [sys.argv[0] if argv is None else str(Path(__file__)), *(sys.argv[1:] if argv is None else argv)]
    try:
        settings = settings_from_args(args)
        check_outputs(settings, args.out, args.overwrite)
        report = run_evaluation(settings, progress=not args.no_progress, argv=command)
        paths = write_report(report, args.out)
    except (ValueError, BackendError, OutputError) as exc:  # bad input, a missing runtime, an unwritable output
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"evaluate: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    print(f"{args.dataset} {args.method}{' + PAMR' if args.pamr else ''}: mIoU {100 * report.metrics.miou:.2f}% "
          f"over {report.num_images} images")
    for kind, path in paths.items():
        print(f"  {kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
