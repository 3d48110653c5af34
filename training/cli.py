"""Command line: ``python -m training {prepare,speckle,train,evaluate,export,profile} ...``.

Errors the user can fix (bad config, bad data, missing files) print one ``error:`` line and
exit with status 2 (1 for a file the system cannot read or write); a training stopped by
Ctrl-C or SIGTERM saves a checkpoint and prints one line (status 130 / 143); anything else is a
bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.speckle import UNITS
from sar_despeckle_plugin.core.user_models import default_models_folder

from .interrupts import TrainingInterrupted

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _prepare(args) -> None:
    from .data import blind_radius_advice
    from .prepare import PrepareOptions, prepare

    bands = tuple(int(b) for b in args.bands.split(",")) if args.bands else ()
    options = PrepareOptions(args.kind, args.units, args.patch, args.stride, args.subsample, bands,
                             args.keep_zeros, args.one_stack)
    patches, info = prepare(args.inputs, options, args.output)
    images = f" from {info['images']} separate stacks" if info["kind"] == "stack" and info["images"] > 1 else ""
    print(f"Wrote {args.output}: {info['patches']} {info['kind']} patches {tuple(patches.shape[1:])}{images} "
          f"({info['skipped']} skipped for nodata/NaN/zeros).")
    speckle = info.get("speckle")
    if speckle:
        print(f"Speckle: {speckle['looks']:.2f} looks; autocorrelation lag 1/2 between rows "
              f"{speckle['rows'][0]:.2f}/{speckle['rows'][1]:.2f}, between columns {speckle['cols'][0]:.2f}/"
              f"{speckle['cols'][1]:.2f} (white speckle: 0; recorded in the file); {blind_radius_advice(speckle)}.")


def _speckle(args) -> None:
    from . import speckle_fit, speckle_model as sm

    if args.preset:
        model = sm.preset(args.preset)
        print(f"# {model.describe()}")
        if model.source:
            print(f"# source: {model.source}")
    else:
        from .data import SourceConfig, blind_radius_advice, load_image_source

        source = SourceConfig(path=args.fit, kind="single_look", units=args.units, band=args.band)
        image = load_image_source(source).images[0][0]
        measured = speckle_fit.measure(image)
        if measured is None:
            raise SarDespeckleError(f"'{args.fit}' has too few homogeneous 16 x 16 windows to measure its speckle.")
        print(f"# measured on {args.fit}: {measured.looks:.2f} looks; lag 1/2 rows {measured.rows[0]:.2f}/"
              f"{measured.rows[1]:.2f}, cols {measured.cols[0]:.2f}/{measured.cols[1]:.2f}")
        print(f"# {blind_radius_advice(measured)}")
        model = speckle_fit.fit_speckle_model(measured, seed=args.seed)
    statistics = speckle_fit.measure_model(model, seed=args.seed)
    true = sm.true_statistics(model)
    print(f"# model's draws measured the same way: {statistics['looks']:.2f} looks; lag 1/2 rows "
          f"{statistics['rows'][0]:.2f}/{statistics['rows'][1]:.2f}, cols {statistics['cols'][0]:.2f}/"
          f"{statistics['cols'][1]:.2f}; exact ENL {true['looks']:.2f}")
    print(f'[data]\nspeckle = "{args.preset}"' if args.preset else model.to_toml())


def _train(args) -> None:
    from .config import load_config
    from .trainer import train

    config = load_config(args.config)
    output = args.output or os.path.join(ROOT, "build", "runs", config.name)
    train(config, os.path.abspath(output), resume=args.resume, log=lambda message: print(message, flush=True))


def _evaluate(args) -> None:
    from . import benchmark
    from .evaluate import evaluate, format_table, protocol_means, write_card_metrics

    if args.protocol:  # the benchmark protocol: its references, held-out rows, looks and seeds
        args.references, args.units, args.looks = benchmark.reference_paths(), "amplitude", benchmark.LOOKS
        args.rows, args.cols, args.seeds = "{}:{}".format(*benchmark.HELD_OUT_ROWS), "", list(benchmark.SEEDS)
    elif not args.references:
        raise SarDespeckleError("Give --references (clean images), or --protocol for the benchmark protocol.")
    if args.write_card and not args.protocol:
        raise SarDespeckleError("--write-card records the benchmark protocol's figures: add --protocol.")
    results = evaluate(args.model, args.references, args.units, args.looks, args.seed, args.rows, args.cols,
                       args.device, args.self_ensemble, args.seeds)
    print(format_table(results, args.looks, args.seed))
    if args.protocol:
        means = protocol_means(results)
        print(f"protocol mean over references, then seeds: PSNR {means['psnr']:.2f} dB, SSIM {means['ssim']:.3f} "
              f"(input {means['psnr_input']:.2f} / {means['ssim_input']:.3f})")
    if args.write_card:
        write_card_metrics(args.model, results, args.looks, args.self_ensemble)
        print(f"Recorded them as the metrics of {args.model}.")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=1)


def _export(args) -> None:
    from .export import export

    card = export(args.checkpoint, args.name, args.to or default_models_folder(), args.description, args.overwrite)
    print(f"Wrote {card} and its weights.")


def _profile(args) -> None:
    import torch

    from sar_despeckle_plugin.core.models.registry import build_model

    from .network_cost import profile, profile_card

    torch.set_num_threads(args.threads)
    if args.model:
        result = profile_card(args.model, args.side, args.device)
    else:
        try:
            hyperparameters = json.loads(args.hyperparameters)
        except json.JSONDecodeError as error:
            raise SarDespeckleError(
                f"--hyperparameters is not valid JSON ({error}): give an object such as "
                "'{\"widths\": [16, 32], \"looks\": 1}'."
            ) from None
        if not isinstance(hyperparameters, dict):
            raise SarDespeckleError(f"--hyperparameters must be a JSON object ({{...}}); got {args.hyperparameters}.")
        try:
            module = build_model(args.architecture, **hyperparameters)
        except (TypeError, ValueError) as error:
            raise SarDespeckleError(f"--architecture {args.architecture} --hyperparameters: {error}.") from None
        result = profile(module, args.side, args.device)
    print(json.dumps(result, indent=1))


def _presets() -> tuple:
    from .speckle_model import PRESETS

    return tuple(PRESETS)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m training", description="Train SAR Despeckle networks.")
    commands = root.add_subparsers(dest="command", required=True)

    p = commands.add_parser("prepare", help="cut GeoTIFFs / numpy arrays into a patch file")
    p.add_argument("inputs", nargs="+", help="GeoTIFFs (any GDAL raster) or .npy arrays")
    p.add_argument("--kind", required=True, choices=("clean", "single_look", "slc", "stack"))
    p.add_argument("--units", default="intensity", choices=UNITS, help="units of real-valued inputs")
    p.add_argument("--patch", type=int, default=64, help="patch side in pixels (after subsampling)")
    p.add_argument("--stride", type=int, default=0, help="step between patches (default: the patch side)")
    p.add_argument("--subsample", type=int, default=1, help="keep every n-th row and column")
    p.add_argument("--bands", default="", help="1-based raster bands, comma separated")
    p.add_argument("--keep-zeros", action="store_true", help="exact zeros are data, not nodata (not for clean)")
    p.add_argument("--one-stack", action="store_true",
                   help="stack: the inputs, in date order, are the dates of ONE co-registered stack "
                        "(default: each input is a stack of its own)")
    p.add_argument("--output", required=True, help="the .npz patch file to write")
    p.set_defaults(run=_prepare)

    p = commands.add_parser("speckle", help="describe a speckle preset, or fit a speckle model to an image")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--preset", choices=sorted(_presets()), help="describe this preset's statistics")
    what.add_argument("--fit", metavar="IMAGE", help="GeoTIFF / .npy of your product (intensity, amplitude or dB)")
    p.add_argument("--units", default="intensity", choices=UNITS, help="units of the --fit image")
    p.add_argument("--band", type=int, default=1, help="1-based band of the --fit raster")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_speckle)

    p = commands.add_parser("train", help="train a network from a TOML config")
    p.add_argument("--config", required=True)
    p.add_argument("--output", default="", help="run folder (default: build/runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output from last.pt")
    p.set_defaults(run=_train)

    p = commands.add_parser("evaluate", help="PSNR / SSIM of a model on clean references")
    p.add_argument("--model", required=True, help="model card (.json)")
    p.add_argument("--references", nargs="+", default=[], help="clean references (.npy or rasters)")
    p.add_argument("--units", default="amplitude", choices=UNITS, help="units of the references")
    p.add_argument("--rows", default="", help="region start:stop (e.g. the held-out 300:500)")
    p.add_argument("--cols", default="")
    p.add_argument("--looks", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="several speckle seeds (records per seed; replaces --seed)")
    p.add_argument("--protocol", action="store_true",
                   help="the benchmark protocol (training/benchmark.py): the three held-out Telecom Paris "
                        "references, rows 300:500, 1 look, seeds 0-9; as scripts/bench_networks.py")
    p.add_argument("--write-card", action="store_true",
                   help="with --protocol: record the means as the card's metrics (weights untouched)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--self-ensemble", action=argparse.BooleanOptionalAction, default=False,
                   help="also despeckle the mirrored image and average, as the plugin's SELF_ENSEMBLE "
                        "does when ticked (default: a single pass, as the plugin runs by default)")
    p.add_argument("--json", default="", help="also write the results here")
    p.set_defaults(run=_evaluate)

    p = commands.add_parser("export", help="checkpoint -> weights + model card")
    p.add_argument("--checkpoint", required=True, help="RUN/best.pt or RUN/last.pt")
    p.add_argument("--name", required=True, help="model name (file stem)")
    p.add_argument("--to", default="",
                   help=f"folder (default: the plugin's default user models folder, {default_models_folder()}; "
                        "the shipped weights go to sar_despeckle_plugin/weights)")
    p.add_argument("--overwrite", action="store_true", help="replace a model of the same name in that folder")
    p.add_argument("--description", default="")
    p.set_defaults(run=_export)

    p = commands.add_parser("profile", help="parameters, MACs/px, reach and speed of a network")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="model card (.json)")
    source.add_argument("--architecture")
    p.add_argument("--hyperparameters", default="{}", help="JSON, with --architecture")
    p.add_argument("--side", type=int, default=2048)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=_profile)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except TrainingInterrupted as stop:
        if stop.message:
            print(stop.message, file=sys.stderr)
        return stop.exit_status
    except SarDespeckleError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a file the system cannot read or write (permissions, full disk, ...)
        where = f": '{error.filename}'" if error.filename else ""
        print(f"error: {error.strerror or error}{where}.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130
    return 0
