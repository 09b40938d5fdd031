"""#18 on CPU: each CUDA knob reaches the code that uses it, chosen by the device argument (the CUDA
choices run here with CPU autocast standing in for CUDA's); on CPU the knobs do nothing; a step's
logs stay on the device and divergence is caught at evaluations; GPU trials ask for GPUs."""
import dataclasses

import pytest
import torch

from raygan.errors import UserError
from raygan.methods.fewshot import adapter as fewshot_adapter
from raygan.methods.fewshot import sections as fewshot_sections
from raygan.methods.fewshot import tgan
from raygan.methods.labelgen import harness as label_harness
from raygan.methods.labelgen import sections as label_sections
from raygan.methods.base import FewShotData
from raygan.models import accel
from raygan.models.checkpoint import random_source
from raygan.models.stylegan2 import ModulatedConv2d
from raygan.search_space import typed
from raygan.train.loop import LossWatch, NonFiniteLoss

CL = torch.channels_last


@pytest.mark.parametrize("train_cls", [fewshot_sections.TrainConfig, label_sections.TrainConfig])
def test_the_knobs_do_nothing_on_cpu_and_choose_the_cuda_branches_on_cuda(train_cls):
    everything = train_cls(precision="bf16", channels_last=True, compile=True)
    assert accel.resolve(everything, "cpu") == accel.Accel("cpu", bf16=False, channels_last=False, compile=False,
                                                           fused_modconv=True)
    assert accel.resolve(train_cls(), "cuda") == accel.Accel("cuda", bf16=True, channels_last=True, compile=False,
                                                             fused_modconv=False)  # the defaults on a GPU
    assert accel.resolve(everything, "cuda:1").compile is True
    off = accel.resolve(train_cls(precision="fp32", channels_last=False), "cuda")
    assert not off.bf16 and not off.channels_last
    assert accel.resolve(train_cls(), "cuda", modconv="fused").fused_modconv is True


@pytest.mark.parametrize("family,knob,value", [
    ("tgan", "precision", "fp16"), ("tgan", "channels_last", "yes"), ("tgan", "compile", "true"),
    ("tgan", "modconv", "grouped"), ("oasis", "precision", "fp16"), ("oasis", "modconv", "fused")])
def test_bad_device_knobs_are_one_line_errors_naming_the_file(family, knob, value):
    with pytest.raises(UserError, match=rf"^exp.yaml: (train.{knob}: expected|unknown key 'train.{knob}')"):
        typed({"method": {"name": family}, "train": {knob: value}}, "exp.yaml")


def tiny_source():
    """A 32-px StyleGAN2 narrower than the embedded one (CPU autocast is slow)."""
    return random_source(dict(size=32, style_dim=16, n_mlp=1, channel_multiplier=1, channel_max=16))


def cuda_choices_on_cpu(train, device, modconv="auto"):
    """What resolve() picks on a GPU, with CPU autocast in place of CUDA's."""
    return dataclasses.replace(accel.resolve(train, "cuda", modconv), device_type="cpu")


@pytest.fixture
def compiled(monkeypatch):
    """torch.compile, recorded and left eager (CPU: no compiler run)."""
    calls = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: calls.append(fn) or fn)
    return calls


def dtypes_of(module):
    seen = []
    module.register_forward_hook(lambda m, i, out: seen.append((out[0] if isinstance(out, tuple) else out).dtype))
    return seen


def test_the_few_shot_step_runs_what_the_cuda_knobs_choose(monkeypatch, compiled):
    monkeypatch.setattr(fewshot_adapter, "resolve", cuda_choices_on_cpu)
    train = fewshot_sections.TrainConfig(batch_size=2, r1_every=2, pl_every=2, compile=True)
    m = tgan.Method(tgan.Config(), {"train": train}, FewShotData(tiny_source(), torch.rand(4, 3, 32, 32) * 2 - 1))
    assert compiled == [m.g, m.d] and (m.g_fast, m.d_fast) == (m.g, m.d)
    convs = [c for net in (m.g, m.g_source, m.g_ema) for c in net.modules() if isinstance(c, ModulatedConv2d)]
    assert convs and not any(c.fused for c in convs)  # auto on CUDA: unfused
    assert m.d.convs[1].conv1[0].weight.is_contiguous(memory_format=CL) and m.shots.is_contiguous(memory_format=CL)
    d_out, g_conv = dtypes_of(m.d), dtypes_of(m.g.convs[1].conv)
    logs = m.step()  # step 0: R1 and path length are due
    # D: on fakes and reals under bf16 autocast, R1's pass in fp32, then the G step's pass on fakes;
    # G: the D step's fakes, the G step's fakes, then the path-length batch in fp32
    assert d_out == [torch.bfloat16, torch.bfloat16, torch.float32, torch.bfloat16]
    assert g_conv == [torch.bfloat16, torch.bfloat16, torch.float32]
    assert {"loss/r1", "loss/path_length", "loss/d_adv"} <= logs.keys()
    assert all(torch.is_tensor(v) and v.ndim == 0 and not v.requires_grad and torch.isfinite(v)
               for v in logs.values())


def test_on_cpu_the_few_shot_step_is_fp32_and_contiguous(compiled):
    train = fewshot_sections.TrainConfig(batch_size=2, precision="bf16", channels_last=True, compile=True)
    m = tgan.Method(tgan.Config(), {"train": train}, FewShotData(tiny_source(), torch.zeros(2, 3, 32, 32)))
    assert compiled == [] and m.accel == accel.resolve(train, "cpu")
    assert not m.d.convs[1].conv1[0].weight.is_contiguous(memory_format=CL)
    g_conv = dtypes_of(m.g.convs[1].conv)
    m.step()
    assert set(g_conv) == {torch.float32}


def test_demodulation_stays_fp32_under_autocast_and_both_modconv_forms_agree():
    torch.manual_seed(0)
    conv = ModulatedConv2d(16, 8, 3, style_dim=4)
    x, style = torch.randn(2, 16, 8, 8), torch.randn(2, 4)
    s = conv.modulation(style)
    w = conv.scale * conv.weight * s.view(2, 1, 16, 1, 1)
    reference = torch.rsqrt(w.pow(2).sum([2, 3, 4]) + conv.eps)  # the port's formula, on the full weights
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d = conv._demodulation(s.bfloat16())
    assert d.dtype == torch.float32
    assert torch.allclose(d, reference, rtol=1e-2)  # bf16 styles in, fp32 arithmetic
    assert torch.allclose(conv._demodulation(s), reference, rtol=1e-5)
    fused = conv(x, style)
    conv.fused = False
    assert torch.allclose(conv(x, style), fused, atol=1e-5)


def test_the_label_step_runs_what_the_cuda_knobs_choose(monkeypatch, compiled):
    moved = []
    monkeypatch.setattr(label_harness, "resolve", cuda_choices_on_cpu)
    monkeypatch.setattr(label_harness, "to_device", lambda x, device: moved.append(device) or x.to(device))
    from raygan.families import labelgen

    torch.manual_seed(0)
    m = labelgen.build(typed({"method": {"name": "oasis"}, "data": {"n_train": 120, "ratio": 0.1},
                              "model": {"g_base": 8, "d_base": 8, "z_dim": 8},
                              "train": {"batch_size": 2, "compile": True}}))
    assert len(compiled) == 2  # G and D_c, compiled in place (their state_dict keys unchanged)
    assert all(k.startswith(("g.", "g_ema.", "d_c.")) or "." not in k for k in m.state_dict())
    for net in (m.g, m.d_c):
        weights = [p for p in net.parameters() if p.ndim == 4]
        assert weights and all(p.is_contiguous(memory_format=CL) for p in weights)
    batch = m.batch(0)
    assert moved == [m.device] * 2 and batch["x_p"].is_contiguous(memory_format=CL)
    outs = []
    convs = [c for c in m.g.modules() if isinstance(c, torch.nn.Conv2d)]
    convs[-1].register_forward_hook(lambda mod, i, out: outs.append(out.dtype))
    logs = m.step()
    assert outs and set(outs) == {torch.bfloat16}
    assert all(torch.is_tensor(v) and torch.isfinite(v) for v in logs.values())


def test_to_device_pins_and_does_not_block_on_cuda_only(monkeypatch):
    x = torch.zeros(2, 3)
    assert accel.to_device(x, "cpu") is x

    class Pinned:
        def to(self, device, non_blocking=False):
            calls.append((device, non_blocking))
            return "on the GPU"

    calls = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: Pinned())
    assert accel.to_device(x, "cuda") == "on the GPU" and calls == [(torch.device("cuda"), True)]


def test_the_loss_watch_names_the_first_non_finite_step_at_the_next_check():
    watch = LossWatch()
    for step in range(1, 6):
        watch.add({"loss/a": torch.tensor(1.0), "loss/b": torch.tensor(float("nan") if step >= 3 else 2.0)}, step)
        if step == 2:
            watch.check()  # finite so far
        if step == 4:
            watch.add({"loss/r1": torch.tensor(float("inf"))}, step)  # a lazy term, later
    with pytest.raises(NonFiniteLoss, match=r"^loss/b became non-finite at step 3$"):
        watch.check()


def test_gpu_trials_ask_for_gpus_train_on_cuda_and_use_nccl(tmp_path, monkeypatch):
    import ray.train.torch

    from raygan.config import ScalingConfig
    from raygan.orchestrate import train as otrain
    from raygan.orchestrate.tune import fit_concurrency, trial_resources
    from raygan.search_space import load_experiment

    (tmp_path / "e.yaml").write_text("method: {name: tgan}\nsearch: {max_concurrent: 4}\n"
                                     "scaling: {use_gpu: true, cpus_per_worker: 1.0}\n")
    exp = load_experiment(tmp_path / "e.yaml")
    assert trial_resources(exp.scaling) == {"cpu": 1.0, "gpu": 1}  # one worker: Tune gives the trial its GPU
    assert fit_concurrency(exp, 16.0, cluster_gpus=3) == 3 and fit_concurrency(exp, 16.0, cluster_gpus=8) == 4
    seen = {}
    monkeypatch.setattr(otrain, "run_worker", lambda config, session, rank, world, device, shard:
                        seen.update(device=device, world=world))
    otrain.train_in_trial(exp.trial_config, exp.scaling, str(tmp_path / "trial"), "t")
    assert seen == {"device": torch.device("cuda"), "world": 1}

    class Trainer:
        def __init__(self, fn, **kwargs):
            seen.update(kwargs)

        def fit(self):
            return "result"

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", Trainer)
    two = ScalingConfig(num_workers=2, use_gpu=True)
    assert otrain.fit_trial(exp.trial_config, two, "run", str(tmp_path), str(tmp_path / "run")) == "result"
    assert seen["torch_config"].backend == "nccl" and seen["scaling_config"].use_gpu is True
    assert seen["train_loop_config"]["_runtime"]["use_gpu"] is True  # workers take ray.train.torch.get_device()
