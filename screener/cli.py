"""Command-line interface: `screener <command> ...`.

Only argparse and the standard library are imported here so that `screener --help` is
instant; each command imports its heavy machinery (torch, monai, pydicom) when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from screener import __version__

NOTICE = "Research and worklist-triage aid, not a diagnostic device."

# command -> "module:function" called with the parsed argparse.Namespace; returns exit code.
COMMANDS: dict[str, str] = {
    "inspect": "screener.io.inspect:run_inspect",
    "screen": "screener.pipeline:run_screen_cli",
    "batch": "screener.batch:run_batch_cli",
    "evaluate": "screener.evaluate:run_evaluate_cli",
    "train": "screener.model.train:run_train_cli",
    "train-verifier": "screener.model.verifier:run_train_verifier_cli",
    "serve": "screener.pacs.scp:run_serve_cli",
    "watch": "screener.pacs.orthanc:run_watch_cli",
}


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    p.add_argument("--log-file", metavar="FILE", help="also write the log to FILE")


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="YAML file merged over configs/default.yaml")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="screener",
        description=("MRI negative-study screener: reads brain MR studies (DICOM or NIfTI) and "
                     "marks each negative, flagged or indeterminate, with a calibrated confidence "
                     f"and the resolution limits of the study. {NOTICE}"),
    )
    parser.add_argument("--version", action="version", version=f"screener {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("inspect", help="list studies and series found in the inputs",
                       description="List every study and series found: UIDs, description, sequence "
                                   "class, shape, voxel size, slice thickness and gap, orientation, "
                                   "affine, file count, warnings.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="DICOM file, folder (recursive), zip, DICOMDIR, NIfTI file(s) or a folder of NIfTI")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--nifti", metavar="OUTDIR", help="also write each series as NIfTI into OUTDIR")
    _add_common(p)

    p = sub.add_parser("screen", help="screen studies: decision, confidence, map, report",
                       description="Screen each study found in INPUT and write report.json, "
                                   "anomaly_map.nii.gz, overlay.png, report.html (and DICOM SR + SEG "
                                   f"for DICOM input) into OUTDIR/<study>/. {NOTICE}")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="as for `inspect`")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="compute device (default: auto = CUDA when present, else CPU)")
    _add_config(p)
    _add_common(p)

    p = sub.add_parser("batch", help="screen many studies, resumable, locally or on Dask",
                       description="Screen every study under ROOT (DICOM tree, NIfTI study folders, "
                                   "or a manifest CSV); write a report per study and a worklist.")
    p.add_argument("roots", nargs="+", metavar="ROOT")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--dask", choices=["local"], help="run on a dask LocalCluster")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run on an existing dask cluster")
    p.add_argument("--force", action="store_true", help="redo studies that already have a report")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    _add_config(p)
    _add_common(p)

    p = sub.add_parser("evaluate", help="metrics on a labelled dataset or the synthetic benchmark",
                       description="Screen a labelled dataset (manifest CSV or BraTS/BIDS folder) and "
                                   "compute study-, voxel- and lesion-level metrics beside the "
                                   "FLAIR-threshold baseline; or run the held-out synthetic benchmark.")
    p.add_argument("manifest", nargs="?", metavar="MANIFEST")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    p.add_argument("--synthetic", type=int, metavar="N", help="run the synthetic benchmark with N studies")
    p.add_argument("--seed", type=int, default=12345, help="seed of the synthetic benchmark")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    _add_config(p)
    _add_common(p)

    p = sub.add_parser("train", help="train the abnormality model on synthetic data (CPU)",
                       description="Train the model from generated heads and lesions; seeded and "
                                   "resumable from the run's checkpoint.")
    p.add_argument("--config", default="configs/train.yaml", metavar="FILE")
    p.add_argument("--smoke", action="store_true", help="a tiny run that finishes in under a minute")
    p.add_argument("--run-dir", metavar="DIR", help="checkpoint folder (default from the config)")
    p.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this long")
    p.add_argument("--export", metavar="WEIGHTS_DIR",
                   help="write the current checkpoint as a weights bundle into WEIGHTS_DIR")
    p.add_argument("--average", nargs="+", metavar="CKPT",
                   help="with --export: write the uniform average of these checkpoints instead "
                        "(files, or COMMIT:PATH from the repository's history)")
    _add_common(p)

    p = sub.add_parser("train-verifier", help="fit the finding verifier of a weights bundle (CPU)",
                       description="Screen synthetic heads drawn from the training label maps with "
                                   "the bundle's network and fit the logistic regression that "
                                   "scores each finding as lesion or not; writes verifier.json "
                                   "into the bundle and records its sha256. About 1 s per head.")
    p.add_argument("--weights", default="weights/screener-synth-v1", metavar="WEIGHTS_DIR")
    p.add_argument("--heads", type=int, default=480, help="synthetic heads (every 4th lesion-free)")
    p.add_argument("--seed", type=int, default=1, help="seed within the 'verify' seed space")
    p.add_argument("--c", type=float, default=1.0, help="inverse L2 strength of the regression")
    _add_common(p)

    p = sub.add_parser("serve", help="DICOM Storage SCP that screens arriving studies",
                       description="Receive studies over DICOM, screen each once it is complete, "
                                   "send SR and SEG back.")
    p.add_argument("--config", required=True, metavar="FILE")
    _add_common(p)

    p = sub.add_parser("watch", help="follow an Orthanc server and screen its stable studies")
    p.add_argument("--orthanc", required=True, metavar="URL", help="Orthanc base URL")
    _add_config(p)
    _add_common(p)
    return parser


def setup_logging(verbose: int, log_file: str | None) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    from screener.hardening.logs import install

    install(handlers)  # defence in depth: person names and file paths never reach a log
    logging.basicConfig(level=level, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    setup_logging(getattr(args, "verbose", 0), getattr(args, "log_file", None))
    module_name, func_name = COMMANDS[args.command].split(":")
    try:
        module = importlib.import_module(module_name)
        func = getattr(module, func_name)
    except (ImportError, AttributeError) as exc:
        print(f"screener {args.command}: not available in this installation ({exc})", file=sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
