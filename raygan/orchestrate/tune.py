"""Ray Tune + Optuna: an Experiment becomes a search whose trials run Ray Train.

Each trial is a plain Tune function. With several workers (scaling.num_workers > 1)
it fits a TorchTrainer on the trial's config and TuneReportCallback forwards rank 0's
metrics and checkpoints to Tune; with one worker it trains in its own process
(train_in_trial), which Tune reuses across trials.
"""
from __future__ import annotations

import os
from pathlib import Path

from raygan.errors import UserError
from raygan.orchestrate.distributions import to_tune
from raygan.search_space import Experiment, resolve

TRIAL_CPUS = 0.01  # a trial that runs Ray Train only waits on its TorchTrainer; workers hold the CPUs
DATA_CPUS = 1.0  # kept free for Ray Data when trials stream their unpaired sets
CANDIDATE = "_confirm"  # a confirmation run's one search dimension: a configuration's knobs (orchestrate/confirm.py)


def _trial(params: dict, *, base: dict, scaling, exp_dir: str, search, env: dict) -> None:
    os.environ.update(env)  # the driver's (orchestrate/train.py driver_env), before anything reads them
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from raygan.orchestrate.replicates import train_replicates
    from raygan.orchestrate.results import STOPPED
    from raygan.orchestrate.train import fit_trial, train_in_trial
    from raygan.runs import TRAIN_RUNS, train_run_name
    from raygan.train.best import BestEvaluation
    from raygan.train.loop import NonFiniteLoss

    params = params.get(CANDIDATE, params)  # a confirmation run's trial: one configuration of the search
    ctx = tune.get_context()
    # The trial's folder in the experiment's storage (get_trial_dir() may be a
    # local working copy that is never synced when Tune reuses actors).
    trial_dir = Path(exp_dir) / Path(ctx.get_trial_dir()).name
    label = f"trial {ctx.get_trial_id()}"
    objectives = search.objectives
    best_of = objectives if search.scope == "best" else ()
    try:
        if search.repeats > 1:  # one configuration, several seeds at once (orchestrate/replicates.py)
            train_replicates(resolve(base, params), scaling, search, trial_dir, label)
        elif trains_in_trial(scaling):
            train_in_trial(resolve(base, params), scaling, log_dir=str(trial_dir), label=label, best_of=best_of,
                           window=search.window)
        else:  # a stable Train run name per trial, so a restarted trial finds its checkpoints
            fit_trial(resolve(base, params), scaling, name=train_run_name(ctx.get_trial_id()),
                      storage=str(Path(exp_dir) / TRAIN_RUNS), log_dir=str(trial_dir),
                      callbacks=[TuneReportCallback()], label=label, best_of=best_of, window=search.window)
    except NonFiniteLoss as e:
        # A diverged trial has finished (its status says why), not failed: neither
        # retried nor resumed. Tune wants the searched metrics in every result; under
        # scope best the trial keeps its best evaluation from before it diverged.
        best = BestEvaluation(best_of, trial_dir).reported() if best_of else {}
        tune.report({**{m: float("nan") for m, _ in objectives}, **best, STOPPED: str(e)})


def tune_metric(search):
    """The result key(s) the searcher and ASHA rank trials by: a trial's best evaluation so
    far (``best/<metric>``, train/best.py) under scope best, else its latest. PBT compares
    trials' current states (it copies the latest checkpoint), so it always reads the latest."""
    from raygan.train.best import reported_name

    if search.scope == "last":
        return search.metric
    return [reported_name(m) for m in search.metric] if search.multi_objective else reported_name(search.metric)


def trains_in_trial(scaling) -> bool:
    """One worker needs no Ray Train: the trial's process trains (no data parallelism to set up)."""
    return scaling.num_workers == 1


def trial_resources(scaling, repeats: int = 1):
    """What Tune reserves for one trial: its own process's share, or, with ``search.repeats`` > 1,
    a placement group with a bundle for the trial and one per seed (its tasks run there)."""
    if repeats > 1:
        from ray.tune import PlacementGroupFactory

        seed = {"CPU": scaling.cpus_per_worker, **({"GPU": 1} if scaling.use_gpu else {})}
        return PlacementGroupFactory([{"CPU": TRIAL_CPUS}] + [dict(seed) for _ in range(repeats)])
    if trains_in_trial(scaling):
        return {"cpu": scaling.cpus_per_worker, "gpu": 1 if scaling.use_gpu else 0}
    return {"cpu": TRIAL_CPUS}


def cpus_per_trial(scaling, repeats: int = 1) -> float:
    if repeats > 1:
        return TRIAL_CPUS + repeats * scaling.cpus_per_worker
    if trains_in_trial(scaling):
        return scaling.cpus_per_worker
    return TRIAL_CPUS + scaling.num_workers * scaling.cpus_per_worker


def set_ray_env() -> None:
    """Defaults for the Ray processes this driver starts (set before ray.init, which
    passes the environment on to a local instance; the user's own values win).
    Train's controller polls its workers every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s by
    default) and notices a start or an end only at a poll: 0.25 s cut the fixed cost of
    a trial from 14 s to 10 s (benchmarks/RESULTS.md, P7)."""
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")


def fit_concurrency(exp: Experiment, cluster_cpus: float, cluster_gpus: float = 0.0) -> int:
    """Trials that fit at once: a trial whose Train workers cannot be placed does
    not queue, it fails after Ray Train's start-up timeout. With use_gpu each worker
    also takes one GPU."""
    from raygan.registry import family_of

    sc = exp.scaling
    per_trial = cpus_per_trial(sc, exp.search.repeats)
    streams = family_of(exp.methods[0]).streams(exp.trial_config)
    # Ray Data's read tasks stall when the trials' Train workers leave less than a
    # whole CPU free (measured: 2 trials x 0.51 CPU on 2 cores hang on the first
    # batch; 2 x 0.31 run), so streamed trials leave one CPU to the data.
    fits = int(max(0.0, cluster_cpus - (DATA_CPUS if streams else 0.0)) // per_trial)
    if streams and fits < 1:
        fits = 1  # the first trial always runs; its data tasks then share the CPUs
    if fits < 1:
        seeds = f" ({exp.search.repeats} seeds x {sc.cpus_per_worker:g})" if exp.search.repeats > 1 else ""
        raise UserError(exp.path, f"scaling: one trial needs {per_trial:g} CPUs{seeds}, the Ray cluster has "
                                  f"{cluster_cpus:g}")
    if sc.use_gpu:
        gpus = sc.num_workers * exp.search.repeats
        fits = min(fits, int(cluster_gpus // gpus))
        if fits < 1:
            raise UserError(exp.path, f"scaling: one trial needs {gpus} GPU(s) (use_gpu), the Ray cluster "
                                      f"has {cluster_gpus:g}; start the GPU workers first (cluster min_workers)")
    if fits < exp.search.max_concurrent:
        print(f"raygan: {fits} trial(s) at a time fit {cluster_cpus:g} CPUs "
              f"(search.max_concurrent is {exp.search.max_concurrent})", flush=True)
    return min(fits, exp.search.max_concurrent)


def _sampler(search):
    """Optuna's sampler. TPE and random handle several objectives as they are
    (TPE then ranks trials by Pareto dominance); NSGA-II evolves a population,
    kept at a quarter of the budget (2 to 50, Optuna's default) so that even a
    small search runs a few generations rather than one random one."""
    import optuna

    if search.searcher == "tpe":
        return optuna.samplers.TPESampler(n_startup_trials=search.startup_trials, seed=search.seed)
    if search.searcher == "nsga2":
        population = min(50, max(2, search.num_samples // 4))
        return optuna.samplers.NSGAIISampler(population_size=population, seed=search.seed)
    return optuna.samplers.RandomSampler(seed=search.seed)


def _searcher(exp: Experiment, max_concurrent: int | None = None, study_dir: Path | None = None):
    """Optuna (TPE, NSGA-II or random; one objective or several); a space with
    grid dimensions goes to Tune's own variant generator instead (every grid
    point x num_samples random draws). With ``study_dir`` (the experiment's results
    folder) the Optuna study, named after the experiment, lives in
    ``study_dir/STUDY_FILE`` (SQLite: optuna-dashboard opens it); without, in memory."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    from raygan.orchestrate.study import STUDY_FILE, StudySearch, StudyStorage, study_url

    s = exp.search
    if exp.is_grid or s.scheduler == "pbt":  # PBT: Tune refuses any other search algorithm beside it
        return BasicVariantGenerator(max_concurrent=max_concurrent or s.max_concurrent, random_state=s.seed)
    storage = None
    if study_dir is not None:
        db = Path(study_dir) / STUDY_FILE
        if db.exists():  # OptunaSearch would load the study it holds and add to it
            raise UserError(exp.path, f"{db} already holds an Optuna study; a new search starts its own "
                                      "(use --resume, another output.name, or remove it)")
        db.parent.mkdir(parents=True, exist_ok=True)
        storage = StudyStorage(study_url(study_dir))
    # Several objectives: OptunaSearch takes the lists and builds a multi-objective
    # study (TuneConfig then names no metric; results.py ranks by Pareto front).
    return ConcurrencyLimiter(StudySearch(sampler=_sampler(s), metric=tune_metric(s), mode=s.mode,
                                          study_name=exp.name, storage=storage),
                              max_concurrent=max_concurrent or s.max_concurrent)


def _scheduler(exp: Experiment):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    s, t = exp.search, exp.trial_config["train"]
    if s.scheduler == "fifo":
        return FIFOScheduler()
    if s.scheduler == "pbt":
        # As Ray's own GAN example: every perturbation_interval evaluations the bottom quarter
        # takes over a top-quarter trial's checkpoint and perturbs (x0.8 / x1.2) or redraws
        # (p = 0.25) its knobs, here every knob of the search space (lr and the loss weights).
        return PopulationBasedTraining(
            time_attr="step", metric=s.metric, mode=s.mode, perturbation_interval=s.perturbation_interval * t["eval_every"],
            hyperparam_mutations={k: to_tune(d) for k, d in exp.space.items() if d.kind != "grid"},
            quantile_fraction=0.25, resample_probability=0.25)
    return ASHAScheduler(time_attr="step", metric=tune_metric(s), mode=s.mode, max_t=t["steps"],
                         grace_period=s.grace_period * t["eval_every"], reduction_factor=2)


def prepare_shared_assets(exp: Experiment) -> None:
    """Check the methods against the source model and build the cached metric
    networks (and e.g. RSSA's inversions) once in the driver, not in every trial;
    the trials' config gets the files the checks found (``loop.prepare``)."""
    from raygan.train.loop import prepare

    from raygan.evaluation.saturation import SATURATED_AT

    # The plateau stopper reads saturated_at_step: the trials must report it, like an objective.
    reads = [(SATURATED_AT, "min")] if exp.search.stopper == "realism_plateau" else []
    exp.trial_config = prepare(exp.trial_config, exp.methods, exp.path, objectives=exp.search.objectives + reads,
                               progress=lambda line: print(f"raygan: {line}", flush=True))


def _identity(exp: Experiment) -> dict:
    """What a resumed search must share with the one it continues (Tune restores the old space)."""
    return {"method": exp.method, "space": {k: (d.kind, list(d.args)) for k, d in exp.space.items()}}


def _check_results_dir(exp: Experiment, storage: Path, exp_dir: Path, resume: bool) -> None:
    """Before anything is built or written: output.dir can be written, a new search
    gets an empty folder, and --resume continues this experiment's search only (the
    experiment file kept beside the results, EXPERIMENT_COPY, says whose it is)."""
    from raygan.runs import EXPERIMENT_COPY
    from raygan.search_space import load_experiment

    probe = storage
    while not probe.exists():  # the nearest existing ancestor must be a writable folder
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        why = "not a folder" if not probe.is_dir() else "no write permission"
        raise UserError(exp.path, f"output.dir {storage} is not writable ({probe}: {why})")
    if exp_dir.exists() and not exp_dir.is_dir():
        raise UserError(exp.path, f"{exp_dir} is a file; expected the results folder of '{exp.name}'")
    if not resume:
        if exp_dir.exists() and any(exp_dir.iterdir()):
            raise UserError(exp.path, f"results for '{exp.name}' already exist in {exp_dir} "
                                      "(use --resume, another output.name, or remove it)")
        return
    kept = exp_dir / EXPERIMENT_COPY
    if not kept.is_file():
        if any(exp_dir.glob("experiment_state-*.json")):
            raise UserError(exp.path, f"--resume: {exp_dir} holds a Tune search without {EXPERIMENT_COPY}; "
                                      "it is not this experiment's (use another output.name)")
        return  # nothing to resume: reported below
    try:
        theirs = load_experiment(kept)
    except UserError:
        theirs = None
    if theirs is None or _identity(theirs) != _identity(exp):
        made_by = theirs.method if theirs is not None else "unreadable"
        raise UserError(exp.path, f"--resume: {exp_dir} holds the search of another experiment ({kept}: "
                                  f"{made_by}, a different method or search space); use another output.name "
                                  "or output.dir")


def run_search(exp: Experiment, resume: bool = False, address: str | None = None):
    """Run the search; returns (ResultGrid, experiment dir). ``address``: the Ray
    instance to run on (``instance.connect``: None for RAY_ADDRESS, the `ray start`
    one or a new local one; "local" for a new local one; or HOST:PORT)."""
    import ray
    from ray import tune

    from raygan.orchestrate.stoppers import RealismPlateau

    if not exp.space:
        raise UserError(exp.path, "the search space is empty: give at least one knob a distribution")
    storage = Path(exp.output.dir).expanduser().resolve()
    exp_dir = storage / exp.name
    _check_results_dir(exp, storage, exp_dir, resume)
    if resume and not tune.Tuner.can_restore(str(exp_dir)):
        raise UserError(exp.path, f"--resume: {exp_dir} holds no search to resume (run without --resume to start one)")
    prepare_shared_assets(exp)  # also checks model.checkpoint before anything is written
    try:
        storage.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(exp.path, f"output.dir {storage} is not writable ({e.strerror})") from None
    set_ray_env()
    # Save the experiment's state (what --resume reads) every 2 s, not Tune's 10 s or
    # more: a driver killed just after a trial finished then finds it finished.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    from raygan.orchestrate.instance import connect
    from raygan.orchestrate.train import driver_env

    # Before anything is written (a bad --address leaves no results folder). The
    # dashboard (on 127.0.0.1 only) also serves the State API that Ray Train polls.
    print(connect(address, dashboard=True), flush=True)
    if not resume:
        from raygan.orchestrate.results import save_experiment

        save_experiment(exp, exp_dir)  # whose search this folder holds (--resume, raygan report)
    else:
        from raygan.orchestrate.study import resume_study_in

        resume_study_in(exp, exp_dir)  # the restored searcher continues this folder's study (STUDY_FILE)
    cpus, gpus = (ray.cluster_resources().get(k, 0) for k in ("CPU", "GPU"))
    if exp.scaling.use_gpu == "auto":
        exp.scaling = exp.scaling.on_cluster(gpus)
        print(f"raygan: scaling.use_gpu auto: {'one GPU per worker' if exp.scaling.use_gpu else 'CPU only'} "
              f"(the Ray cluster has {gpus:g} GPUs)", flush=True)
    trainable = tune.with_resources(
        tune.with_parameters(_trial, base=exp.trial_config, scaling=exp.scaling, exp_dir=str(exp_dir),
                             search=exp.search, env=driver_env()),
        trial_resources(exp.scaling, exp.search.repeats))
    if resume:
        # Finished (and diverged) trials stay as they are; unfinished and errored ones
        # run again and their Train runs continue from their last checkpoints.
        tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={k: to_tune(d) for k, d in exp.space.items()},
            tune_config=tune.TuneConfig(search_alg=_searcher(exp, fit_concurrency(exp, cpus, gpus), study_dir=exp_dir),
                                        scheduler=_scheduler(exp),
                                        num_samples=exp.search.num_samples, reuse_actors=True),
            run_config=tune.RunConfig(
                name=exp.name, storage_path=str(storage), verbose=1,
                stop=RealismPlateau() if exp.search.stopper == "realism_plateau" else None,
                # PBT restores a top trial's checkpoint from when it was chosen, perhaps
                # evaluations later: it must still be there (Ray's PBT guide), so all are kept.
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None if exp.search.scheduler == "pbt" else 2),
                # A crashed trial that trains in its own process restarts from its last
                # checkpoint here; Ray Train restarts its own worker groups.
                failure_config=tune.FailureConfig(
                    max_failures=exp.scaling.max_failures if trains_in_trial(exp.scaling) else 0)),
        )
    return tuner.fit(), exp_dir
