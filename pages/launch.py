import streamlit as st
import yaml

from engine.config import CLASS_COUNTS, ConfigError, parse_config
from engine.datasets import DATASETS
from engine.strategies import STRATEGIES
from pages.ui.lab import PAGES, lab
from pages.ui.model_form import model_config, model_inputs

SWEEP_EXAMPLE = """name: lr-by-strategy
base: {scenario: {dataset: digits, setting: class, n_tasks: 5}, strategy: {name: naive}}
grid: {strategy.name: [naive, replay, ewc], train.lr: [0.01, 0.05]}
seeds: [0, 1, 2]"""

SETTINGS = {"class": "Class-incremental", "task": "Task-incremental", "domain": "Domain-incremental (permuted)"}

the_lab = lab()
st.title("Launch a run")
problems: dict[str, list[str]] = st.session_state.get("launch_problems", {})


def field_error(key: str) -> None:
    """A problem with this field, shown right under it."""
    for line in problems.get(key, []):
        st.error(line, icon=":material/error:")


def hparam_input(key: str, spec):
    label = key.rsplit(".", 1)[-1].replace("_", " ")
    if spec.choices:
        return st.selectbox(label, spec.choices, index=spec.choices.index(spec.default), help=spec.help, key=key)
    if spec.type is bool:
        return st.checkbox(label, value=spec.default, help=spec.help, key=key)
    if spec.type is int:
        return st.number_input(label, value=spec.default, step=1, help=spec.help, key=key,
                               min_value=int(spec.low) if spec.low is not None else None,
                               max_value=int(spec.high) if spec.high is not None else None)
    return st.number_input(label, value=float(spec.default), help=spec.help, key=key, format="%g",
                           min_value=float(spec.low) if spec.low is not None else None,
                           max_value=float(spec.high) if spec.high is not None else None)


left, right = st.columns(2, gap="large")
with left:
    st.subheader("Scenario")
    name = st.text_input("Run name", value="run", key="name")
    field_error("name")
    setting = st.radio("Setting", list(SETTINGS), format_func=SETTINGS.get, horizontal=True, key="scenario.setting")
    dataset = st.selectbox("Dataset", sorted(DATASETS), key="scenario.dataset")
    n_tasks = st.number_input("Tasks", value=5, step=1, min_value=1, key="scenario.n_tasks",
                              help=f"classes are shared out over the tasks ({dataset}: {CLASS_COUNTS.get(dataset, '?')} classes)")
    field_error("scenario.n_tasks")
    shuffle = st.checkbox("Shuffle the class order", key="shuffle_classes")
    class_seed = st.number_input("Class-order seed", value=0, step=1, key="scenario.class_seed", disabled=not shuffle)
    seed = st.number_input("Seed", value=0, step=1, key="seed", help="model initialisation and batch order")

    st.subheader("Model")
    model_inputs(dataset, hparam_input, field_error)

with right:
    st.subheader("Strategy")
    supported = [n for n, cls in STRATEGIES.items() if setting in cls.settings]
    strategy_name = st.selectbox("Strategy", supported, format_func=lambda n: STRATEGIES[n].title, key="strategy.name")
    strategy = STRATEGIES[strategy_name]
    st.caption(strategy.description)
    if setting == "class" and strategy_name in ("ewc", "lwf"):
        st.info("In class-incremental learning with one head, EWC and LwF end close to Naive (about 1/T "
                "accuracy): the known result, not a bug.", icon=":material/info:")
    for key, spec in strategy.hparams.items():
        hparam_input(f"strategy.{strategy_name}.{key}", spec)  # keyed per strategy: choices differ
        field_error(f"strategy.{key}")

    st.subheader("Training")
    c1, c2 = st.columns(2)
    optimizer = c1.selectbox("Optimizer", ["sgd", "adam"], format_func=str.upper, key="train.optimizer")
    lr = c2.number_input("Learning rate", value=0.05, min_value=0.0, format="%g", key="train.lr")
    field_error("train.lr")
    momentum = c1.number_input("Momentum", value=0.0, min_value=0.0, max_value=0.999, format="%g", key="train.momentum",
                               disabled=optimizer != "sgd")
    weight_decay = c2.number_input("Weight decay", value=0.0, min_value=0.0, format="%g", key="train.weight_decay")
    batch_size = c1.number_input("Batch size", value=32, min_value=1, step=1, key="train.batch_size")
    epochs = c2.number_input("Epochs per task", value=5, min_value=1, step=1, key="train.epochs_per_task")

    st.subheader("Continual evaluation")
    c1, c2 = st.columns(2)
    every = c1.number_input("Evaluate every (steps)", value=10, min_value=1, step=1, key="eval.every")
    subset = c2.number_input("Samples per task (0: all)", value=0, min_value=0, step=1, key="eval.subset",
                             help="a fixed random subset of each task's held-out set for the periodic evaluations")


def build_config() -> dict:
    """The config from the widgets' current values (read from the session state: a button's callback
    runs before the script, so the variables above may still hold the previous run's values)."""
    v = st.session_state
    name = v["strategy.name"]
    return {
        "name": v["name"].strip(), "seed": int(v["seed"]),
        "scenario": {"dataset": v["scenario.dataset"], "setting": v["scenario.setting"],
                     "n_tasks": int(v["scenario.n_tasks"]),
                     "class_seed": int(v["scenario.class_seed"]) if v["shuffle_classes"] else None},
        "model": model_config(v)[0],
        "strategy": {"name": name, **{k: v[f"strategy.{name}.{k}"] for k in STRATEGIES[name].hparams}},
        "train": {"optimizer": v["train.optimizer"], "lr": v["train.lr"], "momentum": v["train.momentum"],
                  "weight_decay": v["train.weight_decay"], "batch_size": int(v["train.batch_size"]),
                  "epochs_per_task": int(v["train.epochs_per_task"]), "device": v["train.device"],
                  "precision": v["train.precision"]},
        "eval": {"every": int(v["eval.every"]), "subset": int(v["eval.subset"]) or None},
    }


def launch() -> None:
    data = build_config()
    found: dict[str, list[str]] = model_config(st.session_state)[1]
    if not found:
        try:
            config = parse_config(data)
        except ConfigError as err:
            for line in err.problems:
                field = line.split(" = ")[0].split(":")[0]
                found.setdefault(field, []).append(line)
    st.session_state["launch_problems"] = found
    if not found:
        st.session_state["launched"] = the_lab.manager.submit(config)


st.divider()
mode = st.radio("Launch", ["One run", "A sweep"], horizontal=True, key="launch_mode",
                help="a sweep is the config above times a grid of values times seeds, queued as one group")
if mode == "A sweep":
    st.subheader("Sweep")
    st.caption("The config above is the base. Give comma-separated values for what varies (blank: as above); "
               "the grid is every combination, times every seed. A strategy's hyperparameters apply to the runs of "
               "the strategies that declare them.")
    c1, c2 = st.columns(2)
    c1.multiselect("Strategies", supported, default=[strategy_name], format_func=lambda n: STRATEGIES[n].title,
                   key="sweep.strategy.name")
    c2.text_input("Seeds", value="0, 1, 2", key="sweep.seeds")
    c1.text_input("Learning rates", value="", placeholder="e.g. 0.01, 0.05", key="sweep.train.lr")
    c2.text_input("Batch sizes", value="", placeholder="e.g. 16, 32", key="sweep.train.batch_size")
    chosen = st.session_state.get("sweep.strategy.name") or [strategy_name]
    declared = {k: spec for n in chosen for k, spec in STRATEGIES[n].hparams.items()}
    for i, (key, spec) in enumerate(declared.items()):
        (c1 if i % 2 == 0 else c2).text_input(key.replace("_", " "), value="", help=f"{spec.help} ({spec.describe()})",
                                              placeholder=", ".join(map(str, spec.choices)) if spec.choices else "",
                                              key=f"sweep.strategy.{key}")
    with st.expander("Or a whole sweep file (YAML): random samples, an Optuna search, a reality check"):
        st.text_area("Sweep file", key="sweep.yaml", height=220, placeholder=SWEEP_EXAMPLE,
                     help="the shape of `python -m engine sweep SWEEP.yaml`; it replaces the form when given")


def sweep_spec() -> dict:
    """The sweep from the form: the config above as the base, a grid of the values given, the seeds."""
    v = st.session_state
    if v.get("sweep.yaml", "").strip():
        return yaml.safe_load(v["sweep.yaml"])
    base = build_config()
    grid = {"strategy.name": list(v.get("sweep.strategy.name") or [base["strategy"]["name"]])}
    for key in ["train.lr", "train.batch_size"] + [k for k in v.keys() if k.startswith("sweep.strategy.") and
                                                    k != "sweep.strategy.name"]:
        text = str(v.get(key if key.startswith("sweep.") else f"sweep.{key}", "") or "").strip()
        if text:
            grid[key.removeprefix("sweep.")] = [yaml.safe_load(item) for item in text.split(",") if item.strip()]
    grid = {k: vals for k, vals in grid.items()
            if not k.startswith("strategy.") or k == "strategy.name"
            or any(k.split(".", 1)[1] in STRATEGIES[n].hparams for n in grid["strategy.name"])}
    base["strategy"] = {"name": grid["strategy.name"][0]}
    seeds = [yaml.safe_load(x) for x in str(v.get("sweep.seeds", "0")).split(",") if x.strip()]
    return {"name": base.pop("name") or "sweep", "base": base, "grid": grid, "seeds": seeds}


def launch_sweep() -> None:
    from engine.sweep import parse_sweep
    try:
        spec = parse_sweep(sweep_spec())
    except (ConfigError, ValueError, yaml.YAMLError) as err:
        st.session_state["sweep_problems"] = getattr(err, "problems", None) or [str(err)]
        return
    st.session_state["sweep_problems"] = []
    st.session_state["launched_sweep"] = the_lab.launch_sweep(spec)


if mode == "One run":
    st.button("Launch", type="primary", icon=":material/rocket_launch:", on_click=launch, key="launch")
else:
    st.button("Launch the sweep", type="primary", icon=":material/rocket_launch:", on_click=launch_sweep,
              key="launch_sweep")
    for line in st.session_state.get("sweep_problems", []):
        st.error(line)
if problems and mode == "One run":
    st.error(f"Nothing was queued: {sum(map(len, problems.values()))} problem(s) above.")
    unplaced = [line for key, lines in problems.items() for line in lines
                if key not in ("name", "scenario.n_tasks", "train.lr") and not key.startswith(("strategy.", "model.",
                                                                                             "train.device", "train.precision"))]
    for line in unplaced:
        st.error(line)
if "launched" in st.session_state:
    run_id = st.session_state.pop("launched")
    st.switch_page(PAGES["run"], query_params={"run": run_id})
if "launched_sweep" in st.session_state:
    sweep_id = st.session_state.pop("launched_sweep")
    st.session_state["compare_how"] = "By sweep"
    st.session_state["compare_sweep"] = sweep_id
    st.switch_page(PAGES["compare"])
