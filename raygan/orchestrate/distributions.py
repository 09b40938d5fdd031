"""An experiment's distributions (search_space.Dist) as Ray Tune and Optuna spell them: the one
place where the YAML kinds meet the two libraries."""
from __future__ import annotations

import json


def _option(value):
    """A choice's option as both libraries' configs hold it: Optuna's categorical takes
    scalars only, so list and mapping options travel as JSON text (search_space.resolve
    decodes them)."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def to_tune(dist):
    """uniform, loguniform, int (inclusive bounds), grid, choice -> a Tune search space entry."""
    from ray import tune

    if dist.kind == "uniform":
        return tune.uniform(*dist.args)
    if dist.kind == "loguniform":
        return tune.loguniform(*dist.args)
    if dist.kind == "int":
        return tune.randint(dist.args[0], dist.args[1] + 1)  # YAML bounds are inclusive, randint's high is not
    if dist.kind == "grid":
        return tune.grid_search(dist.args)
    return tune.choice([_option(a) for a in dist.args])


def to_optuna(dist):
    """The same distribution as an Optuna distribution (to rebuild a study from finished trials)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if dist.kind in ("uniform", "loguniform"):
        return FloatDistribution(dist.args[0], dist.args[1], log=dist.kind == "loguniform")
    if dist.kind == "int":
        return IntDistribution(dist.args[0], dist.args[1])
    return CategoricalDistribution([_option(a) for a in dist.args])
