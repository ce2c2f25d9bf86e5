"""Models (cnn, resnet18_reduced, resnet18), devices, precision, LR schedules and evaluation in chunks.

Image runs use an in-memory scenario of generated images (train_run's ``scenario``): no image dataset
is in the registry of this branch yet, and none is added for tests."""

import math

import pytest
import torch

from engine.config import ConfigError, parse_config
from engine.core.devices import gpu_count
from engine.evaluation import ContinualEvaluation
from engine.runs.manager import RunManager, run_in_process
from engine.models import MODELS
from engine.module import build_schedule
from engine.scenarios import DomainShift, Pool, Samples, Scenario, TaskData

IMAGE_SHAPES = [(1, 28, 28), (3, 32, 32), (3, 64, 64)]  # MNIST, CIFAR, Tiny-ImageNet


class ListSink:
    def __init__(self):
        self.rows = []

    def add(self, step, tasks, metric, values):
        self.rows += [(step, t, metric, v) for t, v in zip(tasks, values)]

    def task_start(self, task, step): ...
    def task_end(self, task, step): ...
    def flush(self): ...


def image_scenario(shape=(3, 8, 8), n_tasks=2, classes_per_task=2, per_class=24, seed=0) -> Scenario:
    """Class-incremental tasks of generated images: each class a fixed random pattern plus noise."""
    g = torch.Generator().manual_seed(seed)
    n_classes = n_tasks * classes_per_task
    patterns = torch.randn(n_classes, *shape, generator=g)
    y = torch.arange(n_classes).repeat_interleave(per_class)
    x = patterns[y] + 0.5 * torch.randn(len(y), *shape, generator=g)
    pool = Pool(x, y, None, None, DomainShift(None, shape, n_tasks, seed))  # one tensor; tasks index it
    tasks = []
    for k in range(n_tasks):
        classes = list(range(k * classes_per_task, (k + 1) * classes_per_task))
        rows = torch.nonzero((y >= classes[0]) & (y <= classes[-1])).squeeze(1)
        train, test = rows[::2], rows[1::2]
        tasks.append(TaskData(classes, Samples(pool, train, torch.zeros_like(train)),
                              Samples(pool, test, torch.zeros_like(test))))
    return Scenario("in-memory", "class", n_classes, shape, tasks)


def image_config(model: dict, shape=(3, 8, 8), **train):
    return parse_config({
        "name": f"image-{model['name']}", "scenario": {"n_tasks": 2}, "model": model,
        "train": {"lr": 0.05, "batch_size": 8, "epochs_per_task": 1, **train}, "eval": {"every": 2},
    }, input_shape=shape)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_the_papers_networks():
    reduced = MODELS["resnet18_reduced"]((3, 32, 32), 10)
    assert 1_050_000 <= n_params(reduced) <= 1_150_000  # GEM / A-GEM / Mammoth: about 1.1 M
    assert n_params(reduced) == 1_094_750
    standard = MODELS["resnet18"]((3, 32, 32), 10)
    assert 11_100_000 <= n_params(standard) <= 11_250_000  # the CIFAR ResNet-18: about 11.2 M
    assert n_params(MODELS["cnn"]((3, 32, 32), 10)) < 100_000


@pytest.mark.parametrize("name", ["cnn", "resnet18_reduced", "resnet18", "mlp"])
@pytest.mark.parametrize("shape", IMAGE_SHAPES)
def test_features_and_head_shapes_for_any_channels_and_size(name, shape):
    model = MODELS[name](shape, 7)
    x = torch.randn(3, *shape)
    features = model.features(x)
    assert features.shape == (3, model.feature_dim)
    assert isinstance(model.head, torch.nn.Linear) and model.head.out_features == 7
    assert model(x).shape == (3, 7)
    assert {"resnet18_reduced": 160, "resnet18": 512}.get(name, model.feature_dim) == model.feature_dim


@pytest.mark.parametrize("model", [{"name": "cnn", "channels": [8, 16]}, {"name": "resnet18_reduced"},
                                   {"name": "resnet18", "nf": 8}, {"name": "mlp", "hidden": [16]}])
def test_each_model_trains_on_images_through_the_engine(store, model):
    scenario = image_scenario()
    config = image_config(model)
    run_id = run_in_process(store, config, scenario=scenario)
    status, device, total = store.sql("SELECT status, device, total_steps FROM runs WHERE id = ?", [run_id])[0]
    assert (status, device) == ("finished", "cpu")
    assert total == 2 * math.ceil(24 / 8)
    losses = [v for (v,) in store.sql("SELECT value FROM metrics WHERE run_id = ? AND metric = 'train_loss' "
                                      "ORDER BY step", [run_id])]
    assert len(losses) == total and all(math.isfinite(v) for v in losses)
    rows = store.sql("SELECT count(*) FROM metrics WHERE run_id = ? AND metric = 'boundary_acc'", [run_id])[0][0]
    assert rows == 3 * 2  # before training and after each task, every task


def test_a_cnn_learns_the_generated_images():
    from engine.training.train import train_run

    sink = ListSink()
    config = image_config({"name": "cnn", "channels": [16]}, epochs_per_task=8, optimizer="adam", lr=0.01)
    assert train_run(config, sink, scenario=image_scenario(n_tasks=1, classes_per_task=4, per_class=16)).status == "finished"
    acc = [v for step, t, metric, v in sink.rows if metric == "boundary_acc"]
    assert acc[-1] >= 0.9 > acc[0] + 0.3  # from chance (1/4) to near perfect


def test_image_models_refuse_flat_data_and_cuda_without_a_gpu_with_one_line():
    with pytest.raises(ConfigError) as err:
        parse_config({"model": {"name": "resnet18_reduced"}})  # digits: rows of 64 values
    assert err.value.problems == ["model.name = 'resnet18_reduced': needs image input (channels, height, width), and "
                                  "dataset digits gives flat rows of 64 values (use mlp, or an image dataset)"]
    with pytest.raises(ConfigError) as err:
        parse_config({"model": {"name": "cnn", "channels": [8, 0]}}, input_shape=(1, 8, 8))
    assert err.value.problems == ["model.channels = [8, 0]: every entry must be from 1 to 4096 (got 0)"]
    with pytest.raises(ConfigError) as err:
        parse_config({"model": {"name": "mlp", "nf": 3}})
    assert err.value.problems == ["model.nf: is not a known field"]
    with pytest.raises(ConfigError) as err:
        parse_config({"train": {"device": "tpu"}})
    assert err.value.problems == ["train.device = 'tpu': must be auto, cpu, cuda or cuda:N (N a GPU index)"]
    if gpu_count() == 0:
        for device in ("cuda", "cuda:0"):
            with pytest.raises(ConfigError) as err:
                parse_config({"train": {"device": device}})
            assert err.value.problems == [f"train.device = {device!r}: this machine has no GPU (use auto or cpu)"]
        with pytest.raises(ConfigError) as err:
            parse_config({"train": {"precision": "16-mixed"}})
        assert len(err.value.problems) == 1 and err.value.problems[0].startswith("train.precision = '16-mixed': needs a GPU")
    assert parse_config({"train": {"precision": 32, "device": "cpu"}}).train.precision == "32"


def test_a_sweep_checks_model_keys_against_the_models():
    from engine.sweeps.sweep import expand, parse_sweep

    def problems(grid):
        with pytest.raises(ConfigError) as err:
            parse_sweep({"name": "w", "base": {"scenario": {"n_tasks": 2}}, "grid": grid, "seeds": [0]})
        return err.value.problems

    assert problems({"model.depth": [2, 3]}) == [
        "grid.model.depth: model has no field depth (fields: name, hidden, init, channels, batch_norm, nf)"]
    assert problems({"model.nf": [8, 20]}) == ["grid.model.nf: is not a known field"]  # the base's model is mlp
    assert problems({"model.init": ["xavier", "he"]}) == ["grid.model.init = 'he': must be 'default' or 'xavier'"]
    swept = expand(parse_sweep({"name": "i", "base": {"scenario": {"n_tasks": 2}}, "grid": {"model.init": ["default", "xavier"]}}))
    assert [c.model.init for c in swept] == ["default", "xavier"]


@pytest.mark.parametrize("schedule,expected", [
    ("constant", [1, 1, 1, 1, 1, 1, 1, 1]),
    ("step", [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5]),  # lr_step_every 2 epochs of 2 steps
    ("cosine", [0.5 * (1 + math.cos(math.pi * s / 8)) for s in range(8)]),
])
def test_schedules_give_the_expected_lr_each_step_for_each_group(schedule, expected):
    cfg = parse_config({"train": {"schedule": schedule, "epochs_per_task": 4, "lr": 0.1, "lr_step_every": 2,
                                  "lr_gamma": 0.5}}).train
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.01}], lr=cfg.lr)  # a slower group
    sched = build_schedule(opt, cfg, steps_per_epoch=2)
    seen = []
    for _ in range(8):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert [a for a, _ in seen] == pytest.approx([0.1 * f for f in expected])
    assert [b for _, b in seen] == pytest.approx([0.01 * f for f in expected])  # each group its own lr


def test_warmup_rises_linearly_then_the_schedule_follows():
    cfg = parse_config({"train": {"schedule": "cosine", "warmup_steps": 4, "epochs_per_task": 1, "lr": 1.0}}).train
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = build_schedule(opt, cfg, steps_per_epoch=12)
    seen = []
    for _ in range(12):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert seen[4:] == pytest.approx([0.5 * (1 + math.cos(math.pi * s / 8)) for s in range(8)])


def test_the_schedule_restarts_at_each_task_in_a_run(tmp_path):
    """A step schedule with a vanishing gamma: in each task only the first epoch moves the weights. The
    first epoch matches a constant-lr twin step for step, and the second task moves the weights again
    (the schedule restarted with its optimizer)."""
    from engine.training.train import train_run

    def losses(sink):
        return [v for step, t, metric, v in sorted(sink.rows) if metric == "train_loss"]

    stepped, twin = ListSink(), ListSink()
    model = {"name": "cnn", "channels": [4]}
    train_run(image_config(model, schedule="step", lr_step_every=1, lr_gamma=1e-9, epochs_per_task=2, weights="every"), stepped,
              scenario=image_scenario(), weights_dir=tmp_path)
    train_run(image_config(model, epochs_per_task=2), twin, scenario=image_scenario())
    per_epoch = 3  # 24 training images a task, batch 8
    assert losses(stepped)[:per_epoch + 1] == pytest.approx(losses(twin)[:per_epoch + 1])
    assert losses(stepped)[per_epoch + 1:2 * per_epoch] != pytest.approx(losses(twin)[per_epoch + 1:2 * per_epoch])
    w = [torch.load(tmp_path / f"after-task-{k}.pt") for k in range(3)]
    moved = [sum((w[k + 1][n] - w[k][n]).float().norm() for n in w[0]) for k in range(2)]
    assert moved[1] > 0.2 * moved[0] > 0


def test_bf16_mixed_precision_runs_on_the_cpu_and_changes_the_numbers(store):
    from engine.training.train import train_run

    results = {}
    for precision in ("32", "bf16-mixed"):
        sink = ListSink()
        config = image_config({"name": "cnn", "channels": [8]}, precision=precision)
        assert train_run(config, sink, scenario=image_scenario()).status == "finished"
        results[precision] = [v for step, t, metric, v in sorted(sink.rows) if metric == "train_loss"]
    assert all(math.isfinite(v) for v in results["bf16-mixed"])
    assert results["bf16-mixed"] != results["32"]  # autocast reached the strategy's forward
    assert results["bf16-mixed"] == pytest.approx(results["32"], abs=0.1)


def test_evaluation_in_chunks_gives_the_same_accuracies_as_all_at_once():
    scenario = image_scenario(n_tasks=3, per_class=30)
    torch.manual_seed(0)
    model = MODELS["resnet18_reduced"]((3, 8, 8), scenario.n_classes, nf=4)
    model.train()
    model(torch.randn(16, 3, 8, 8))  # batch-norm statistics that are not the initial ones
    sets = [(t.test_x, t.test_y) for t in scenario.tasks]
    whole = ContinualEvaluation(sets, ListSink(), batch_size=None).evaluate(model)
    for batch_size in (1, 7, 30, 1000):
        chunked = ContinualEvaluation(sets, ListSink(), batch_size=batch_size).evaluate(model)
        assert chunked[0] == whole[0]
        assert chunked[1] == pytest.approx(whole[1], rel=1e-5)
    assert model.training  # put back in training mode


def test_a_run_with_deterministic_algorithms_repeats_exactly():
    from engine.training.train import train_run

    series = []
    for _ in range(2):
        sink = ListSink()
        train_run(image_config({"name": "cnn", "channels": [4]}, deterministic=True), sink, scenario=image_scenario())
        series.append(sorted(sink.rows))
    assert series[0] == series[1]
    assert torch.are_deterministic_algorithms_enabled()
    train_run(image_config({"name": "cnn", "channels": [4]}), ListSink(), scenario=image_scenario())
    assert not torch.are_deterministic_algorithms_enabled()


def test_the_manager_places_runs_by_device_and_fails_a_gpu_run_it_cannot_place(store):
    manager = RunManager(store, warm_workers=0, paused=True, gpus=(0, 1))
    try:
        assert manager.need("cpu") is None
        assert manager.need("auto") == "any" and manager.need("cuda") == "any"
        assert manager.need("cuda:1") == 1
        assert manager.need("cuda:7").startswith("train.device = 'cuda:7': no such GPU here")
    finally:
        manager.shutdown()
    # a queue kept from a machine with GPUs, opened on one without: the run fails with one line
    config = parse_config({"name": "from-elsewhere"}).model_dump(mode="json")
    config["train"]["device"] = "cuda:1"
    run_id = store.create_run(config, name="from-elsewhere")
    manager = RunManager(store, warm_workers=0, gpus=())
    try:
        assert manager.wait(run_id, timeout=30) == "failed"
        assert store.sql("SELECT error FROM runs WHERE id = ?", [run_id])[0][0] == \
            "train.device = 'cuda:1': no such GPU here (GPUs: none)"
        assert manager.counts()["workers"] == 0  # nothing was started for it
    finally:
        manager.shutdown()


def test_mlp_xavier_init_draws_glorot_uniform_weights_and_zero_biases_in_a_run(store):
    """model.init: xavier (Mammoth's MNIST MLP): every linear layer's weights uniform on (-a, a), a =
    sqrt(6 / (fan_in + fan_out)), biases 0, read from a run's weights before training (after-task-0.pt)."""
    import math

    import torch

    from engine.runs.manager import run_in_process
    from tests.conftest import small_config

    def initial_weights(init):
        run_id = run_in_process(store, small_config("naive", model={"name": "mlp", "hidden": [400, 400], "init": init},
                                                    train={"weights": "every"}))
        return torch.load(store.artifacts_dir(run_id) / "after-task-0.pt")

    xavier, default = initial_weights("xavier"), initial_weights("default")
    layers = [k[:-len(".weight")] for k in xavier if k.endswith(".weight")]
    assert len(layers) == 3  # two hidden layers and the head
    for name in layers:
        w, b = xavier[f"{name}.weight"], xavier[f"{name}.bias"]
        fan_out, fan_in = w.shape
        a = math.sqrt(6 / (fan_in + fan_out))
        assert float(w.abs().max()) <= a and float(w.abs().max()) > 0.95 * a
        assert abs(float(w.std()) - a / math.sqrt(3)) < 0.05 * a / math.sqrt(3)  # a uniform's sd
        assert not b.any()
        assert default[f"{name}.bias"].any()  # PyTorch's default draws biases too
        assert float(default[f"{name}.weight"].abs().max()) <= 1 / math.sqrt(fan_in)  # Kaiming(a = sqrt 5) bound


def test_the_launch_form_offers_the_mlp_init_and_queues_it(lab_launch_page):
    import json

    lab, at = lab_launch_page
    at.selectbox(key="model.mlp.init").set_value("xavier")
    at.button(key="launch").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    config = json.loads(lab.store.sql("SELECT config FROM runs ORDER BY id DESC LIMIT 1")[0][0])
    assert config["model"]["init"] == "xavier"
