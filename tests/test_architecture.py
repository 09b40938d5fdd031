"""The package's import graph: no cycles, and the layers of docs/ARCHITECTURE.md respected.

Every import counts, at module level or inside a function (a lazy import is still a
dependency: it only hides the cycle until the function runs)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "raygan"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from raygan.families import labelgen` imports the module raygan.families.labelgen
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            else:
                continue
            deps.update(t for t in targets if t in modules and t != name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


# The layers of docs/ARCHITECTURE.md: (group, layer, members). A member is a folder of raygan/ (every
# module in it) or a module at raygan/'s top; never a module inside a folder, so that a folder is a
# layer. A module may import from a lower layer or from its own group, nothing else.
GROUPS = [
    ("bottom", 0, ["raygan", "raygan.errors", "raygan.registry", "raygan.config", "raygan.cache", "raygan.weights",
                   "raygan.pareto", "raygan.stats", "raygan.runs", "raygan.sync"]),
    ("models", 1, ["raygan.models"]),
    ("losses", 2, ["raygan.losses"]),
    ("data", 2, ["raygan.data"]),
    ("methods", 3, ["raygan.methods"]),
    ("metrics", 3, ["raygan.metrics"]),
    ("evaluation", 4, ["raygan.evaluation"]),
    ("families", 5, ["raygan.families"]),
    ("experiment", 6, ["raygan.search_space", "raygan.train"]),
    ("orchestrate", 7, ["raygan.orchestrate"]),
    ("eval command", 8, ["raygan.commands"]),
    ("report", 8, ["raygan.report"]),
    ("dashboard", 8, ["raygan.dashboard"]),
    ("cli", 9, ["raygan.cli"]),
]
RAY_USERS = ("raygan.orchestrate", "raygan.dashboard", "raygan.data.streams", "raygan.report")


def group_of(module: str) -> tuple[str, int]:
    best = None
    for group, layer, prefixes in GROUPS:
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[2]):
                best = (group, layer, len(p))
    return best[:2]


def forbidden(graph) -> list[str]:
    out = []
    for module, deps in sorted(graph.items()):
        group, layer = group_of(module)
        for dep in sorted(deps):
            dep_group, dep_layer = group_of(dep)
            if not (dep_layer < layer or dep_group == group):
                out.append(f"{module} ({group}) imports {dep} ({dep_group})")
    return out


def test_no_module_imports_a_layer_above_its_own():
    assert forbidden(import_graph()) == []


def test_every_layer_is_made_of_whole_folders_and_top_level_modules():
    members = [m for _, _, ms in GROUPS for m in ms]
    folders = {f"raygan.{p.name}" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    top = {f"raygan.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert sorted(m for m in members if m not in folders | top | {"raygan"}) == []  # no module inside a folder
    assert sorted((folders | top) - set(members)) == []  # every folder and top-level module has its layer
    assert len(members) == len(set(members))


def test_the_layer_check_catches_orchestration_importing_the_report_and_evaluation_the_orchestration():
    graph = {"raygan.orchestrate.results": {"raygan.report.page"}, "raygan.report.page": set(),
             "raygan.evaluation.trials": {"raygan.orchestrate.results"}}
    assert forbidden(graph) == [
        "raygan.evaluation.trials (evaluation) imports raygan.orchestrate.results (orchestrate)",
        "raygan.orchestrate.results (orchestrate) imports raygan.report.page (report)"]


def test_the_layer_check_catches_a_method_importing_a_metric():
    assert forbidden({"raygan.methods.fewshot.dcl": {"raygan.metrics.frechet"}, "raygan.metrics.frechet": set()}) == [
        "raygan.methods.fewshot.dcl (methods) imports raygan.metrics.frechet (metrics)"]


def test_only_orchestration_and_data_streaming_import_ray():
    users = []
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                    [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            if any(m == "ray" or m.startswith("ray.") for m in mods) and not name.startswith(RAY_USERS):
                users.append(name)
    assert sorted(set(users)) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_walker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_registry_imports_no_raygan_module():
    assert import_graph()["raygan.registry"] == set()


def test_every_lazy_import_names_something_that_exists():
    """Imports inside functions run late: a moved or renamed name would only fail when that
    function is first called (in a trial, on a user's input)."""
    import importlib

    missing = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("raygan"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name):
                        try:
                            importlib.import_module(f"{node.module}.{alias.name}")
                        except ImportError:
                            missing.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.module}.{alias.name}")
    assert missing == []


def test_the_worked_example_of_adding_a_method_runs(tmp_path, monkeypatch):
    """docs/ARCHITECTURE.md's new method, as written there: its file plus its registry line make a
    method that loads from YAML, builds, trains and evaluates."""
    import re
    import sys
    import textwrap

    from raygan import registry
    from raygan.search_space import load_experiment
    from raygan.train.loop import Hooks, run

    doc = (PACKAGE.parent / "docs" / "ARCHITECTURE.md").read_text()
    code, line = re.findall(r"```python\n(.*?)```", doc, re.S)[:2]
    module_path, = re.findall(r'"raygan\.methods\.fewshot\.(\w+)"', line)
    (tmp_path / f"{module_path}_example.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    name = re.findall(r'"(\w+)": \("fewshot"', line)[0]
    monkeypatch.setitem(registry.METHODS, name, ("fewshot", f"{module_path}_example"))
    exp = tmp_path / "example.yaml"
    exp.write_text(textwrap.dedent(f"""\
        method: {{name: {name}, weight: {{loguniform: [0.01, 10]}}}}
        train: {{steps: 2, batch_size: 2, eval_every: 2, eval_samples: 20}}
        """))
    cfg = load_experiment(exp).trial_config
    reports = []
    final = run(cfg, Hooks(report=lambda m, s: reports.append(m)))
    assert final["step"] == 2 and "loss/l2sp" in final and final["loss/l2sp"] >= 0
    assert len(reports) == 2 and "fd_shapesnet" in final
    sys.modules.pop(f"{module_path}_example", None)


def test_the_worked_example_of_adding_a_metric_runs(tmp_path):
    """docs/ARCHITECTURE.md's new metric, as written there: its function and @register line make a
    metric that an experiment accepts, a trial's evaluation reports (scoring blank paper 0 and
    the source's sketches above it) and `raygan eval` computes."""
    import re

    import torch

    from raygan.commands.evaluate import parse_metrics
    from raygan.data.synthetic import few_shot_target
    from raygan.evaluation import fewshot
    from raygan.evaluation.trials import Evaluator
    from raygan.models.checkpoint import load_source
    from raygan.search_space import load_experiment

    doc = (PACKAGE.parent / "docs" / "ARCHITECTURE.md").read_text()
    section = doc[doc.index("## Adding a metric"):]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    name = re.findall(r'@register\("(\w+)"', code)[0]
    exec(compile(code, "ARCHITECTURE.md", "exec"), {})
    try:
        assert fewshot.METRICS[name].mode == "max" and name in parse_metrics(f"fid,{name}")
        exp = tmp_path / "metric.yaml"
        exp.write_text(f"method: {{name: tgan}}\ntrain: {{eval_samples: 20}}\neval: {{metrics: [{name}, realism]}}\n")
        assert load_experiment(exp).trial_config["eval"]["metrics"] == [name, "realism"]

        src = load_source("embedded")
        ev = Evaluator(src.generator(), few_shot_target(32, 4), 20, metrics=[name])
        sketches = ev.metrics(src.generator())[name]
        assert sketches > 0.01 and ev.provenance[name]["network"] == "sobel edges"
        assert ev.score(torch.ones(20, 3, 32, 32))[name] == 0.0  # blank paper: no edges
    finally:
        del fewshot.METRICS[name]
