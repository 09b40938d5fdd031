"""P4 with noise-aware arms, simulated: at equal compute, which search policy returns the better
configuration when seed noise is as large as measured on the main job?

Real searches (benchmarks/p4_search_efficiency.py) cost ~143 s per 700-step seed run on 2 cores, so
the arms x repetitions P4 needs (dozens of searches per arm) are days here. This script replays the
decision each policy makes on a noise model taken from the measured noise floor (RESULTS, #25:
fd_shapesnet, seed std ~55 within a configuration, std ~17 between configurations' means):
configuration c has a true value mu_c ~ N(0, between^2); one seed run of it observes
mu_c + N(0, seed^2); lower is better (fd). Each policy spends the same number of seed runs, B:

  one_seed    B configurations x 1 seed, returns the best observed (1-seed TPE/random)
  repeats_k   B/k configurations x k seeds, returns the best seeds' mean (search.repeats: k)
  confirm     B/2 configurations x 1 seed, then the top 2 on B/4 fresh seeds each, returns the
              best pooled mean (search.confirm_top: 2)
  random_4x   4B configurations x 1 seed (4x the compute: P4's reference)

and, for each, how often its claim is honest: the returned configuration is called better than
the runner-up (raygan's tie test, raygan.stats.worse_than, where both have >= 2 seeds; with one
seed, rank 1 is always named the winner, untested) and truly is. Configurations are drawn at
random (what TPE does in its startup trials, which is all of a 2-4-configuration search).
Usage: python benchmarks/p4_noise_sim.py [--seed-sd 55] [--between-sd 17] [--budget 4 8] [--reps 20000]
"""
from __future__ import annotations

import argparse

import numpy as np

from raygan.stats import worse_than


def run_policy(policy: str, budget: int, rng, seed_sd: float, between_sd: float):
    """(true value of the returned configuration, its rank among the drawn ones' true values (0 =
    truly best), whether the policy claims it beats the runner-up, whether that claim is true)."""
    def draw(n):
        return rng.normal(0, between_sd, n)

    def runs(mu, k):
        return mu[:, None] + rng.normal(0, seed_sd, (len(mu), k))

    if policy == "one_seed" or policy == "random_4x":
        mu = draw(budget * (4 if policy == "random_4x" else 1))
        obs = runs(mu, 1)
    elif policy.startswith("repeats_"):
        k = int(policy.split("_")[1])
        mu = draw(budget // k)
        obs = runs(mu, k)
    elif policy == "confirm":
        mu = draw(budget // 2)
        first = runs(mu, 1)
        top = np.argsort(first.mean(1))[:2]
        extra = runs(mu[top], budget // 4)
        obs = [list(first[i]) + (list(extra[list(top).index(i)]) if i in top else []) for i in range(len(mu))]
    else:
        raise ValueError(policy)
    obs = [list(o) for o in obs]
    means = np.array([np.mean(o) for o in obs])
    order = np.argsort(means)
    best, second = order[0], order[1]
    truly = mu[best] < mu[second]
    if min(len(obs[best]), len(obs[second])) < 2:  # one seed: rank 1 is named a winner, untested
        return mu[best], int((mu < mu[best]).sum()), True, truly
    claimed = worse_than(obs[best], obs[second], "min", 0.05)[0] is True
    return mu[best], int((mu < mu[best]).sum()), claimed, claimed and truly


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed-sd", type=float, default=55.0)
    ap.add_argument("--between-sd", type=float, default=17.0)
    ap.add_argument("--budget", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--reps", type=int, default=20000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"seed sd {args.seed_sd}, between-configuration sd {args.between_sd}, {args.reps} repetitions; "
          "true value in units of the between sd (lower is better; 0 = an average configuration)")
    print("| budget (seed runs) | policy | configurations | true value of the returned (mean ± sem) "
          "| returned is truly best of those drawn | claims a winner | claim true |")
    print("|---|---|---|---|---|---|---|")
    for budget in args.budget:
        for policy in ("one_seed", "repeats_2", "repeats_4", "confirm", "random_4x"):
            if policy == "repeats_4" and budget < 8:
                continue
            out = [run_policy(policy, budget, rng, args.seed_sd, args.between_sd) for _ in range(args.reps)]
            value = np.array([o[0] for o in out]) / args.between_sd
            n_cfg = {"one_seed": budget, "random_4x": 4 * budget, "confirm": budget // 2}.get(
                policy, budget // int(policy[-1]) if policy.startswith("repeats") else 0)
            claims = np.mean([o[2] for o in out])
            true_claims = np.sum([o[3] for o in out]) / max(1, np.sum([o[2] for o in out]))
            print(f"| {budget}{' (4x)' if policy == 'random_4x' else ''} | {policy} | {n_cfg} "
                  f"| {value.mean():+.3f} ± {value.std(ddof=1) / np.sqrt(len(value)):.3f} "
                  f"| {np.mean([o[1] == 0 for o in out]):.2f} | {claims:.3f} "
                  f"| {true_claims:.2f}{' (untested)' if policy in ('one_seed', 'random_4x') else ''} |")


if __name__ == "__main__":
    main()
