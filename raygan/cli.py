"""raygan command line. Imports stay lazy so that ``raygan --help`` is instant."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ADDRESS_HELP = ("the Ray instance to run on: by default RAY_ADDRESS, else the one `ray start` runs on this "
                "machine, else a new local one; 'local': always a new local one; or HOST:PORT (ray://HOST:PORT)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raygan", description="Data-efficient GANs, searched and scaled on Ray.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("tune", help="run the hyperparameter search an experiment YAML describes")
    t.add_argument("space", help="experiment YAML, e.g. search_spaces/dcl.yaml")
    t.add_argument("--resume", action="store_true", help="continue an interrupted search of the same name")
    t.add_argument("--output", help="results folder (overrides output.dir)")
    t.add_argument("--address", help=ADDRESS_HELP)

    r = sub.add_parser("train", help="train one configuration (searched knobs take their defaults)")
    r.add_argument("config", help="experiment YAML")
    r.add_argument("--local", action="store_true", help="plain PyTorch loop without Ray (debugging)")
    r.add_argument("--output", help="results folder (overrides output.dir)")
    r.add_argument("--address", help=ADDRESS_HELP + " (not with --local)")

    d = sub.add_parser("data", help="dataset tools")
    dsub = d.add_subparsers(dest="data_command", required=True)
    pk = dsub.add_parser("pack", help="write a semi-paired split as parquet shards that Ray Data streams")
    pk.add_argument("src", help="'scenes' (the embedded procedural scenes) or a dataset folder")
    pk.add_argument("dst", help="new folder: paired/, unpaired_images/, unpaired_labels/, split.json")
    pk.add_argument("--layout", default="scenes", choices=["scenes", "cityscapes", "ade20k", "cocostuff"])
    pk.add_argument("--ratio", type=float, default=0.05, help="supervision ratio r = |P| / (|P| + |X_u|)")
    pk.add_argument("--size", type=int, default=32, help="square side the arrays are stored at")
    pk.add_argument("--seed", type=int, default=0, help="which split (and, for scenes, which scenes)")
    pk.add_argument("--n", type=int, default=2000, help="scenes: how many training scenes")
    pk.add_argument("--split", default="train", help="dataset split to read (real layouts)")

    q = sub.add_parser("pretrain", help="train a StyleGAN2 source on a folder of images through Ray Train "
                                         "(without FOLDER: the embedded source on the procedural shapes)")
    q.add_argument("folder", nargs="?", help="folder of source-domain images (png/jpg/webp/bmp)")
    q.add_argument("--out", help="FOLDER: new results folder (source.pt, source.png, logs, checkpoints); "
                                 "without: the checkpoint to write (default raygan/assets/source_shapes32.pt)")
    q.add_argument("--steps", type=int, help="default 100000 (FOLDER), 5000 (embedded)")
    q.add_argument("--size", type=int, help="image side, a power of two: default 256 (FOLDER), 32 (embedded)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--force", action="store_true", help="embedded: overwrite an existing checkpoint")
    q.add_argument("--init", help="embedded: continue training from this checkpoint")
    q.add_argument("--resume", action="store_true", help="FOLDER: continue the run in --out (killed, or finished: "
                                                          "with --steps, on to that many steps)")
    q.add_argument("--workers", type=int, default=1, help="FOLDER: Ray Train workers (data parallel)")
    q.add_argument("--gpu", action="store_true", help="FOLDER: one GPU per worker (NCCL)")
    q.add_argument("--cpus-per-worker", type=float, default=1.0)
    q.add_argument("--batch", type=int, default=16, help="FOLDER: images per worker and step (rosinality's 16)")
    q.add_argument("--style-dim", type=int, default=512)
    q.add_argument("--n-mlp", type=int, default=8)
    q.add_argument("--channel-multiplier", type=int, default=2)
    q.add_argument("--channel-max", type=int, default=512)
    q.add_argument("--eval-every", type=int, default=2000, help="FOLDER: steps between evaluations and checkpoints")
    q.add_argument("--eval-samples", type=int, default=500)
    q.add_argument("--address", help=ADDRESS_HELP)

    e = sub.add_parser("eval", help="score a checkpoint (trial or rosinality layout), with each score's provenance")
    e.add_argument("checkpoint", help="a trial folder, checkpoint_* folder, state.pt or rosinality-layout .pt")
    e.add_argument("--metrics", help="comma-separated metrics of raygan/evaluation/metrics.py: fid, kid, "
                                     "is, fid_shots, intra_lpips, scs, fd_shapesnet, realism, intra_shapesnet, "
                                     "fd_domainnet, intra_domainnet, ... "
                                     "(default fid,kid,intra_lpips); miou for label-to-image")
    e.add_argument("--samples", type=int, default=1000, help="generated images (fixed z, seeded)")
    e.add_argument("--reference", help="folder of real images for fid/kid (default: embedded held-out targets)")
    e.add_argument("--reference-count", type=int, default=2000, help="embedded reference images")
    e.add_argument("--shots", help="folder of the M training images for intra-LPIPS and fid_shots, prepared as a "
                                   "trial prepares its shots (default: embedded 10 shots)")
    e.add_argument("--source", default="embedded", help="source generator G_s for scs (and realism's C without "
                                                        "--source-images)")
    e.add_argument("--source-images", help="folder of non-target images the realism classifier C of a folder "
                                           "target (--shots, with --reference) is trained against (default: G_s's "
                                           "samples)")
    e.add_argument("--lpips-net", default="vgg", choices=["vgg", "alex"])
    e.add_argument("--scs-edges", default="hed", choices=["hed", "sobel", "canny"],
                   help="hed (published) or a named fallback")
    e.add_argument("--inception", help="pt_inception-2015-12-05-6726825d.pth (else env / torch hub cache)")
    e.add_argument("--lpips-weights", help="vgg16-397923af.pth or alexnet-owt-7be5be79.pth")
    e.add_argument("--hed", help="network-bsds500.pytorch (sniklaus/pytorch-hed)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="cpu")
    e.add_argument("--out", help="JSON file to write (default: eval_<timestamp>.json next to the checkpoint)")
    e.add_argument("--config", help="label-to-image checkpoint outside a run folder: the experiment YAML it was "
                                    "trained with")

    gn = sub.add_parser("generate", help="look at a checkpoint: a G_s-over-G_t grid, PNGs for external FID tools, "
                                         "an interpolation strip")
    gn.add_argument("checkpoint", help="a trial folder, checkpoint_* folder, state.pt or rosinality-layout .pt")
    gn.add_argument("--out", help="new folder to write (default: generate_<timestamp> next to the checkpoint)")
    gn.add_argument("--n", type=int, default=8, help="grid columns, one code each")
    gn.add_argument("--pngs", type=int, default=100, help="images written to OUT/samples/ (0: none)")
    gn.add_argument("--steps", type=int, default=8, help="interpolation frames (0: none)")
    gn.add_argument("--truncation", type=float, default=1.0, help="ψ: w̄ + ψ (w - w̄); 1: none")
    gn.add_argument("--seed", type=int, default=0, help="which codes and noise (those of raygan eval --seed)")
    gn.add_argument("--source", help="G_s of the grid's top row (default: the trial's source; 'none': no top row)")
    gn.add_argument("--device", default="cpu")

    rp = sub.add_parser("report", help="an HTML page (and PNGs) of a finished search: RUN_DIR/report/index.html")
    rp.add_argument("run_dir", help="a raygan tune results folder, e.g. raygan_results/dcl")
    rp.add_argument("--space", help="the experiment YAML, for runs that predate RUN_DIR/experiment.yaml")

    b = sub.add_parser("dashboard", help="Ray dashboard and TensorBoard for a results folder, on 127.0.0.1")
    b.add_argument("results", nargs="?", default="./raygan_results", help="results folder (output.dir)")
    b.add_argument("--port", type=int, default=8265, help="Ray dashboard port, when a local head is started")
    b.add_argument("--tb-port", type=int, default=6006, help="TensorBoard port")
    b.add_argument("--address", default="auto",
                   help="auto: RAY_ADDRESS or a cluster running on this machine, else start one; "
                        "local: always start one; or HOST:PORT / http://HOST:8265")
    b.add_argument("--host", default="127.0.0.1", help="listen address (anything else is reachable by others)")
    b.add_argument("--run-for", type=float, help=argparse.SUPPRESS)  # tests: stop after this many seconds
    return p


def _load(path: str, output: str | None):
    from raygan.search_space import load_experiment

    exp = load_experiment(path)
    if output:
        exp.output.dir = output
    return exp


def cmd_tune(args) -> int:
    import math
    import time

    from raygan.orchestrate.instance import check_address

    check_address(args.address)  # before the experiment's imports (torch) and Ray's
    exp = _load(args.space, args.output)
    from raygan.orchestrate.results import write_summary
    from raygan.orchestrate.tune import run_search

    t0 = time.time()
    if exp.is_grid:
        points = math.prod(len(d.args) for d in exp.space.values() if d.kind == "grid")
        how = f"{points * exp.search.num_samples} trials (grid of {points} x {exp.search.num_samples})"
    else:
        how = f"{exp.search.num_samples} trials, {exp.search.searcher}"
    print(f"raygan: {exp.method} search '{exp.name}': {how} + {exp.search.scheduler}, "
          f"optimising {exp.search.describe()} over {', '.join(exp.space)}", flush=True)
    results, exp_dir = run_search(exp, resume=args.resume, address=args.address)
    rows = None
    if exp.search.confirm_top:
        from raygan.orchestrate.confirm import confirm
        from raygan.orchestrate.results import ranked_rows

        rows = confirm(exp, ranked_rows(results, exp), exp_dir)
    write_summary(results, exp, exp_dir, rows)
    print(f"\nraygan: done in {time.time() - t0:.0f} s; results in {exp_dir}")
    if (exp_dir / "best_config.yaml").exists():
        print(f"raygan: best configuration: {exp_dir / 'best_config.yaml'}")
    print(f"raygan: tensorboard --logdir {exp_dir}")
    print(f"raygan: raygan report {exp_dir}")
    return 0 if any(r.error is None and not (r.metrics or {}).get("stopped") for r in results) else 1


def cmd_train(args) -> int:
    if args.local and args.address:
        from raygan.errors import UserError

        raise UserError("--address", "--local trains without Ray: give one of --local and --address")
    from raygan.orchestrate.instance import check_address

    check_address(args.address)  # before the experiment's imports (torch) and Ray's
    exp = _load(args.config, args.output)
    if exp.space:
        print(f"raygan: searched knobs take their defaults: {', '.join(exp.space)}")
    out = Path(exp.output.dir).expanduser().resolve() / exp.name
    from raygan.train.loop import NonFiniteLoss
    from raygan.orchestrate.local import train_local, train_on_ray

    try:
        if args.local:
            train_local(exp, out)
        else:
            train_on_ray(exp, out, address=args.address)
    except NonFiniteLoss as e:  # the run's outcome, not a crash: one line, and what was written stays
        print(f"raygan: stopped: {e} (last checkpoint and logs in {out})", file=sys.stderr)
        return 1
    print(f"raygan: tensorboard --logdir {out}")
    return 0


def cmd_data(args) -> int:
    import json

    from raygan.data.semipaired import pack

    if (args.src == "scenes") != (args.layout == "scenes"):
        from raygan.errors import UserError

        raise UserError(args.src, "expected SRC 'scenes' with --layout scenes, or a dataset folder with "
                                  "--layout cityscapes|ade20k|cocostuff")
    info = pack(args.src, args.dst, layout=args.layout, ratio=args.ratio, seed=args.seed, size=args.size,
                n_train=args.n, split=args.split)
    print(f"raygan: packed {json.dumps(info['counts'])} (r = {info['ratio']:.3f}) into {args.dst}")
    return 0


def cmd_pretrain(args) -> int:
    if args.folder is None:
        from raygan.train.pretrain import pretrain

        pretrain(args.out or "raygan/assets/source_shapes32.pt", steps=args.steps or 5000, size=args.size or 32,
                 seed=args.seed, force=args.force, init=args.init)
        return 0
    from raygan.errors import UserError
    from raygan.orchestrate.instance import check_address
    from raygan.orchestrate.pretrain import PretrainOptions, pretrain

    if args.out is None:
        raise UserError("raygan pretrain", "FOLDER needs --out, a new folder for the run")
    check_address(args.address)  # before the heavy imports
    pretrain(PretrainOptions(
        folder=args.folder, out=args.out, size=args.size or 256, steps=args.steps or 100_000, batch=args.batch,
        workers=args.workers, gpu=args.gpu, cpus_per_worker=args.cpus_per_worker, style_dim=args.style_dim,
        n_mlp=args.n_mlp, channel_multiplier=args.channel_multiplier, channel_max=args.channel_max,
        eval_every=args.eval_every, eval_samples=args.eval_samples, seed=args.seed, resume=args.resume,
        extend_to=args.steps if args.resume else None),
        address=args.address)
    return 0


def cmd_eval(args) -> int:
    from raygan.commands.evaluate import evaluate_checkpoint, format_table, parse_metrics
    from raygan.evaluation.fewshot import EvalOptions

    opts = EvalOptions(metrics=parse_metrics(args.metrics) if args.metrics else None, samples=args.samples, reference=args.reference,
                       reference_count=args.reference_count, shots=args.shots, source=args.source,
                       source_images=args.source_images,
                       lpips_net=args.lpips_net, scs_edges=args.scs_edges, inception=args.inception,
                       lpips_weights=args.lpips_weights, hed=args.hed, seed=args.seed, device=args.device,
                       out=args.out, config=args.config)
    records, out = evaluate_checkpoint(args.checkpoint, opts)
    print(format_table(records))
    print(f"raygan: eval: scores with provenance in {out}")
    return 0


def cmd_generate(args) -> int:
    from raygan.commands.generate import GenerateOptions, generate_images

    opts = GenerateOptions(n=args.n, pngs=args.pngs, steps=args.steps, truncation=args.truncation, seed=args.seed,
                           source=args.source, out=args.out, device=args.device)
    print(f"raygan: generate: {generate_images(args.checkpoint, opts)}")
    return 0


def cmd_report(args) -> int:
    from raygan.report.page import write_report

    print(f"raygan: report: {write_report(args.run_dir, space=args.space)}")
    return 0


def cmd_dashboard(args) -> int:
    from raygan.dashboard import serve

    return serve(args.results, port=args.port, tb_port=args.tb_port, address=args.address, host=args.host,
                 run_for=args.run_for)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from raygan.errors import UserError

    try:
        return {"tune": cmd_tune, "train": cmd_train, "data": cmd_data,
                "pretrain": cmd_pretrain, "dashboard": cmd_dashboard, "eval": cmd_eval,
                "generate": cmd_generate, "report": cmd_report}[args.command](args)
    except UserError as e:
        print(f"raygan: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("raygan: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
