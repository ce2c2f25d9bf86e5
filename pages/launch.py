"""Launch a run or a sweep. The values shown are the values launched: no input clamps or reverts a
value; every value is checked through ``parse_config`` as it changes and each problem is shown under
its own field, with the run's cost estimate (``engine.training.cost``) above the Launch button. A sweep is
parsed and expanded in a child process with limits (``engine.sweeps.check``), never on this thread.
``?from=RUN_ID`` opens the form filled with that run's config (relaunch with changes)."""

import json
import re
import typing

import streamlit as st

from engine.core.access import AccessDenied
from engine.config import ConfigError, TrainConfig, default_run_name, next_copy_name, parse_config
from engine.datasets import DATASET_INFO, dataset_status
from engine.core.inputs import load_yaml
from engine.core.limits import limits
from engine.presets import PRESETS, get_preset
from engine.strategies import STRATEGIES
from engine.sweeps.spec import grid_plan
from pages.ui.lab import PAGES, lab, may, me
from pages.ui.launch_form import MORE, SECTIONS, form_config, form_state, model_config
from pages.ui.model_form import model_inputs

SWEEP_EXAMPLE = """name: lr-by-strategy
base: {scenario: {dataset: digits, setting: class, n_tasks: 5}, strategy: {name: naive}}
grid: {strategy.name: [naive, replay, ewc], train.lr: [0.01, 0.05]}
seeds: [0, 1, 2]"""

SETTINGS = {"class": "Class-incremental", "task": "Task-incremental", "domain": "Domain-incremental"}  # its kind under More settings
OPTIMIZERS = typing.get_args(TrainConfig.model_fields["optimizer"].annotation)
WEIGHTS = typing.get_args(TrainConfig.model_fields["weights"].annotation)
SHORT_TEXT = 200  # characters a one-line field takes (widths, sweep values): nothing big reaches this process
MODES = ["One run", "A sweep"]

the_lab = lab()
if not may(me(), "launch"):  # a viewer (the page is not in their sidebar; a link still leads here)
    st.title("Launch")
    st.info(f"{me()} may only read: launching runs needs the member or admin role.", icon=":material/visibility:")
    st.stop()
shown: set[str] = set()  # the fields drawn, whose problems are shown under them


def fill_from_run(source: str) -> None:
    """Fill the form with run ``source``'s config once (then rerun, so each input draws the value set),
    named as its next copy; a bad or unknown id is one line."""
    from store.queries import run_row

    if st.session_state.get("relaunch_from") == source:
        return
    st.session_state["relaunch_from"] = source
    run = run_row(the_lab.store, int(source)) if source.isdigit() and len(source) < 10 else None
    if run is None:
        st.session_state["relaunch_note"] = ("error", f"from = {source[:40]!r}: no such run; give the id of a run "
                                                      "(the Runs page lists them). The form shows the defaults.")
        st.rerun()
    try:
        config = json.loads(run["config"])  # a dict, not a RunConfig: a run of a strategy this lab lacks is shown too
        state, missing = form_state(config)
        state["launch_mode"] = MODES[0]
    except (ValueError, TypeError, AttributeError) as err:
        st.session_state["relaunch_note"] = ("error", f"from = {source}: run {source}'s config cannot be read ({err})")
        st.rerun()
    stem = re.sub(r" \(\d+\)$", "", run["name"])
    taken = {name for (name,) in the_lab.store.sql("SELECT name FROM runs WHERE starts_with(name, ?)", [stem])}
    state["name"] = next_copy_name(run["name"], taken)
    st.session_state.update(state)
    # a run named by default: its copy is named so while the form's default name is the run's, and
    # follows the form once it is not; a name the user gave is kept, as a name typed
    by_default = stem == default_run_name(config)
    st.session_state["relaunch_copy"] = (stem, state["name"]) if by_default else None
    st.session_state["name_auto"] = state["name"] if by_default else None
    st.session_state["relaunch_note"] = ("info", f"The form holds run {source}'s config ({run['name']}): change what "
                                                 "you want and launch." + "".join(f" {line}." for line in missing))
    st.rerun()


def start_from_preset() -> None:
    """The Start from box's callback: the form shows the chosen paper's setting, every field it does
    not give at the form's defaults (then each input draws the value set)."""
    v = st.session_state
    if v.get("preset"):
        state, _ = form_state(get_preset(v["preset"]).config())  # a run or a sweep, as chosen
        v.update(state)


def follow_name(mode: str) -> None:
    """The name follows the form's choices (what the run or sweep is) until the user types one; an
    emptied name follows them again."""
    v = st.session_state
    data = form_config(v)
    if mode == MODES[1]:  # a sweep is named after the strategies it runs
        chosen = v.get("sweep.strategy.name", [data["strategy"]["name"]])
        data["strategy"]["name"] = "+".join(chosen) or "no strategy"
    auto = default_run_name(data)[:100]
    copy = v.get("relaunch_copy")
    if copy and auto == copy[0]:  # still what the relaunched run was: its copy's name
        auto = copy[1]
    if not (v.get("name") or "").strip() or v.get("name") == v.get("name_auto"):
        v["name"] = v["name_auto"] = auto


def strategy_changed() -> None:
    """The Strategy box's new strategy takes the old one's place in the sweep's list (else a sweep
    listing the old one ran it, with the new one's settings shown above)."""
    v = st.session_state
    old, new, chosen = v.get("strategy_drawn"), v["strategy.name"], v.get("sweep.strategy.name")
    if chosen is not None and old in chosen and new not in chosen:
        v["sweep.strategy.name"] = [new if name == old else name for name in chosen]


def field_of(line: str) -> str:
    """The field a problem line is about: 'train.lr = -0.1: ...' -> 'train.lr'; 'model: ...' -> 'model'."""
    return line.split(" = ")[0].split(":")[0].strip()


def check(v) -> tuple[object | None, dict[str, list[str]]]:
    """The validated config (None if it has problems) and its problems by field, cost included."""
    from engine.training.cost import estimate
    from engine.runs.admission import run_problems

    data = form_config(v)
    found = model_config(v)[1]  # lists of whole numbers that are not
    try:
        config = parse_config(data)
    except ConfigError as err:
        for line in err.problems:
            if field_of(line) not in found:
                found.setdefault(field_of(line), []).append(line)
        return None, found
    if found:
        return None, found
    for line in run_problems(config, estimate(config)):
        found.setdefault(field_of(line), []).append(line)
    return (None if found else config), found


if "from" in st.query_params:
    fill_from_run(str(st.query_params["from"]))
else:  # a later visit, not a relaunch: neither the note nor the run it was about
    for key in ("relaunch_from", "relaunch_note", "relaunch_copy"):
        st.session_state.pop(key, None)
mode = st.session_state.get("launch_mode", MODES[0])
st.title("Launch a sweep" if mode == MODES[1] else "Launch a run")
mode = st.radio("Launch", MODES, horizontal=True, key="launch_mode", label_visibility="collapsed",
                help="a sweep is the config below times a grid of values times seeds, queued as one group")
preset = st.selectbox("Start from", list(PRESETS), index=None, key="preset", on_change=start_from_preset,
                      format_func=lambda name: PRESETS[name].title, placeholder="the lab's defaults",
                      help="a published setting (the paper's model, optimizer, batch and schedule); change what you want")
if preset:
    st.caption(f"Settings as in `configs/reproduce/{PRESETS[preset].file}`, which names their sources; "
               "a config file or sweep base gets the same with `preset: " + preset + "`.")
if "relaunch_note" in st.session_state:
    kind, line = st.session_state["relaunch_note"]
    (st.error if kind == "error" else st.info)(line, icon=":material/replay:")
follow_name(mode)
config, problems = check(st.session_state)
refused = st.session_state.get("launch_problems", {})
if config is not None and refused.get("config") == config.model_dump_json():  # the budget, checked at launch
    for key, lines in refused["lines"].items():
        problems.setdefault(key, []).extend(lines)


def field_error(*keys: str) -> None:
    """The problems of these fields, right under the field just drawn."""
    for key in keys:
        shown.add(key)
        for line in problems.get(key, []):
            st.error(line, icon=":material/error:")


def initial(key: str, value) -> str:
    """``key``, its widget's first value set through the session state: a widget given a default as
    well logs a warning with a stack trace when the state already holds its value (a relaunch)."""
    st.session_state.setdefault(key, value)
    return key


def number_input(label: str, key: str, value, **kw):
    """A number input of floats, even for a whole number (see ``launch_form.whole``): a typed 2.5 stays 2.5 and
    the check says what is wrong; steps of 1 for a whole number."""
    return st.number_input(label, key=initial(key, value), format="%g", step=1.0 if type(value) is int else None, **kw)


def number(label: str, key: str, value, *, where=None, **kw):
    """A number input that keeps the value typed (no min or max: Streamlit would put back the previous
    value), with its problems under it."""
    with where or st.container():
        out = number_input(label, key, value, **kw)
        field_error(key)
    return out


def hparam_input(key: str, problem_key: str, spec):
    label = key.rsplit(".", 1)[-1].replace("_", " ")
    help = f"{spec.help} ({spec.describe()})"
    if spec.choices:
        st.selectbox(label, spec.choices, help=help, key=initial(key, spec.default))
    elif spec.type is bool:
        st.checkbox(label, help=help, key=initial(key, spec.default))
    else:
        number_input(label, key, spec.default if spec.type is int else float(spec.default), help=help)
    field_error(problem_key)


def more_settings(section: str) -> None:
    """An input for each field of ``section`` listed in ``MORE``, built from the field's type."""
    cls = SECTIONS[section]
    for field in MORE[section]:
        info, key = cls.model_fields[field], f"{section}.{field}"
        label, kind, help = field.replace("_", " "), info.annotation, info.description
        if typing.get_origin(kind) is typing.Literal:
            st.selectbox(label, typing.get_args(kind), key=initial(key, info.default), help=help)
        elif kind is bool:
            st.checkbox(label, key=initial(key, info.default), help=help)
        elif kind in (int, float):
            number(label, key, info.default, help=help)
        else:  # scenario.tasks: a list of task numbers or none
            st.text_input(label, value="", key=key, max_chars=SHORT_TEXT, placeholder="empty: all",
                          help=f"{help} (whole numbers, comma-separated)")
        field_error(key)


left, right = st.columns(2, gap="large")
with left:
    # ---- Scenario -----------------------------------------------------------------------------------
    st.subheader("Scenario")
    st.text_input("Sweep name" if mode == MODES[1] else "Run name", value=None, key="name", max_chars=SHORT_TEXT,
                  placeholder="empty: named after the strategy, dataset and setting")
    field_error("name")
    setting = st.radio("Setting", list(SETTINGS), format_func=SETTINGS.get, horizontal=True, key="scenario.setting")
    root = st.text_input("Data directory", value="", key="scenario.root", max_chars=4096,
                         placeholder="empty: $CL_LAB_DATA, else data/ beside the app",
                         help="where the dataset files are, in the layouts torchvision writes (not needed for the "
                              "embedded digits and MNIST-1D)").strip()
    field_error("scenario.root")
    data_status = {row["name"]: row for row in dataset_status(root or None)}
    # the label is the dataset's title alone: the browser sends the label back as the choice, so a label
    # that changed with the data directory ("(files missing)") came back as an unknown dataset
    dataset = st.selectbox("Dataset", list(DATASET_INFO), key="scenario.dataset", format_func=lambda n: DATASET_INFO[n].title,
                           help="whether the chosen dataset's files are found is said under the box")
    (st.caption if data_status[dataset]["ready"] else st.warning)(data_status[dataset]["message"])
    field_error("scenario.dataset", "scenario.setting")
    number("Tasks", "scenario.n_tasks", 5,
           help=f"classes are shared out over the tasks ({dataset}: "
                f"{DATASET_INFO[dataset].n_classes or 'as in the files'} classes)")
    shuffle = st.checkbox("Shuffle the class order", key="shuffle_classes")
    number("Class-order seed", "scenario.class_seed", 0, disabled=not shuffle,
           help="used only with the box above ticked; otherwise the classes come in order 0, 1, 2, ...")
    number("Seed", "seed", 0, help="model initialisation and batch order")
    with st.expander("More scenario settings"):
        more_settings("scenario")
    field_error("scenario")

    # ---- Model --------------------------------------------------------------------------------------
    st.subheader("Model")
    model_inputs(dataset, hparam_input, field_error)

with right:
    # ---- Strategy -----------------------------------------------------------------------------------
    st.subheader("Strategy")
    supported = [n for n, cls in STRATEGIES.items() if setting in cls.settings]
    strategy_name = st.selectbox("Strategy", supported, format_func=lambda n: STRATEGIES[n].title, key="strategy.name",
                                 on_change=strategy_changed)
    st.session_state["strategy_drawn"] = strategy_name
    strategy = STRATEGIES[strategy_name]
    st.caption(strategy.description)
    if setting == "class" and strategy_name in ("ewc", "lwf"):
        st.info("In class-incremental learning with one head, EWC and LwF end close to Naive (about 1/T "
                "accuracy): the known result, not a bug.", icon=":material/info:")
    for key, spec in strategy.hparams.items():
        hparam_input(f"strategy.{strategy_name}.{key}", f"strategy.{key}", spec)  # keyed per strategy: choices differ
    if mode == MODES[1] and strategy_name not in st.session_state.get("sweep.strategy.name", [strategy_name]):
        st.warning(f"{strategy.title} is not among the sweep's strategies below: this strategy and its settings "
                   "are not run.", icon=":material/warning:")
    field_error("strategy", "strategy.name")

    # ---- Training -----------------------------------------------------------------------------------
    st.subheader("Training")
    c1, c2 = st.columns(2)
    with c1:
        optimizer = st.selectbox("Optimizer", OPTIMIZERS, format_func=str.upper, key="train.optimizer")
        field_error("train.optimizer")
    number("Learning rate", "train.lr", 0.05, where=c2)
    number("Momentum", "train.momentum", 0.0, where=c1, disabled=optimizer != "sgd",
           help="SGD only: from 0 up to, not including, 1")
    number("Weight decay", "train.weight_decay", 0.0, where=c2)
    number("Batch size", "train.batch_size", 32, where=c1)
    number("Epochs per task", "train.epochs_per_task", 5, where=c2)
    number("Iterations per task", "train.iterations_per_task", 0, where=c1,
           help=TrainConfig.model_fields["iterations_per_task"].description.replace("null:", "0:"))
    st.selectbox("Weights kept", WEIGHTS, key=initial("train.weights", "last"),
                 help=TrainConfig.model_fields["weights"].description)
    with st.expander("More training settings"):
        more_settings("train")
    field_error("train.weights", "train")

    # ---- Continual evaluation -----------------------------------------------------------------------
    st.subheader("Continual evaluation")
    c1, c2 = st.columns(2)
    number("Evaluate every (steps)", "eval.every", 10, where=c1)
    number("Samples per task (0: all)", "eval.subset", 0, where=c2,
           help="a fixed random subset of each task's held-out set for the periodic evaluations; 0: all of it")
    with st.expander("More evaluation settings"):
        more_settings("eval")
    field_error("eval")


def launch() -> None:
    """Queue the run shown, or keep the problems (the manager checks the cost and the weights budget
    again, against the database)."""
    config, found = check(st.session_state)
    st.session_state["launch_problems"] = {}
    if config is None:
        st.session_state["refused"] = sum(map(len, found.values()))
        return
    try:
        st.session_state["launched"] = the_lab.launch_run(config, principal=me())
    except ConfigError as err:  # the weights budget, known only against the database
        st.session_state["launch_problems"] = {"config": config.model_dump_json(),
                                               "lines": {field_of(line): [line] for line in err.problems}}
        st.session_state["refused"] = len(err.problems)
    except AccessDenied as err:  # a quota reached (runs queued, weights), or the role changed
        st.session_state["launch_problems"] = {"config": config.model_dump_json(), "lines": {"access": [str(err)]}}
        st.session_state["refused"] = 1


def sweep_form(v) -> dict:
    """The form's sweep: the config above as the base, a grid of exactly the strategies picked (none
    added) and of the values given, the seeds. Raises ``ConfigError`` for a value that is not YAML."""
    base = form_config(v)  # a list that is not whole numbers stays text: the check says what is wrong
    chosen = list(v.get("sweep.strategy.name", [base["strategy"]["name"]]))
    grid: dict[str, list] = {"strategy.name": chosen}
    for key in ["train.lr", "train.batch_size"] + [k.removeprefix("sweep.") for k in v.keys()
                                                    if k.startswith("sweep.strategy.") and k != "sweep.strategy.name"]:
        text = str(v.get(f"sweep.{key}", "") or "").strip()
        if text:
            grid[key] = [load_yaml(item, key) for item in text.split(",") if item.strip()]
    grid = {k: vals for k, vals in grid.items()
            if not k.startswith("strategy.") or k == "strategy.name"
            or any(k.split(".", 1)[1] in STRATEGIES[n].hparams for n in chosen)}
    if base["strategy"]["name"] not in chosen:  # the form's strategy values are for its strategy alone
        base["strategy"] = {"name": chosen[0] if chosen else base["strategy"]["name"]}
    seeds = [load_yaml(x, "seeds") for x in str(v.get("sweep.seeds", "0")).split(",") if x.strip()]
    return {"name": base.pop("name") or "sweep", "base": base, "grid": grid, "seeds": seeds}


def sweep_text() -> str:
    """The sweep as text for the check: the pasted file, or the form's sweep as JSON. Each form item is
    short (``SHORT_TEXT``)."""
    v = st.session_state
    if v.get("sweep.yaml", "").strip():
        return v["sweep.yaml"]
    sweep = sweep_form(v)
    if not sweep["grid"]["strategy.name"]:
        raise ConfigError(["Strategies: pick at least one; the sweep runs exactly the strategies listed"])
    return json.dumps(sweep, default=str)


def sweep_preview() -> None:
    """What the form's sweep will run, before it is launched: each strategy, its runs and the
    hyperparameters it keeps fixed; the runs in all."""
    try:
        sweep = sweep_form(st.session_state)
    except ConfigError as err:
        st.warning(f"{err.problems[0]}: the runs are counted once it is fixed.")
        return
    seeds = sweep["seeds"]
    plan = grid_plan(sweep["base"], sweep["grid"], seeds)
    if not plan:
        st.warning("No strategy picked: the sweep runs exactly the strategies listed above.")
        return
    total = sum(runs for _, runs, _ in plan)
    lines = [f"- **{name}**: {runs} run{'s' * (runs != 1)}" + (" · " + ", ".join(f"{k} = {v}" for k, v in fixed.items())
                                                             if fixed else "") for name, runs, fixed in plan]
    st.info(f"This sweep will run {total} run{'s' * (total != 1)} in all: {', '.join(n for n, _, _ in plan)} "
            f"(each over {len(set(map(str, seeds)))} seed(s) and the values given), and no other strategy.\n\n"
            + "\n".join(lines), icon=":material/checklist:")


if mode == MODES[1]:
    st.divider()
    st.subheader("Sweep")
    st.caption("The config above is the base. Give comma-separated values for what varies (blank: as above); "
               "the grid is every combination, times every seed. A strategy's hyperparameters apply to the runs of "
               "the strategies that declare them.")
    c1, c2 = st.columns(2)
    c1.multiselect("Strategies", supported, format_func=lambda n: STRATEGIES[n].title,
                   key=initial("sweep.strategy.name", [strategy_name]),
                   help="exactly these run (the strategy above only if it is listed; changing it there changes it here)")
    c2.text_input("Seeds", key=initial("sweep.seeds", "0, 1, 2"), max_chars=SHORT_TEXT)
    c1.text_input("Learning rates", value="", placeholder="e.g. 0.01, 0.05", key="sweep.train.lr", max_chars=SHORT_TEXT)
    c2.text_input("Batch sizes", value="", placeholder="e.g. 16, 32", key="sweep.train.batch_size", max_chars=SHORT_TEXT)
    chosen = st.session_state.get("sweep.strategy.name", [strategy_name])
    declared = {k: spec for n in chosen for k, spec in STRATEGIES[n].hparams.items()}
    for i, (key, spec) in enumerate(declared.items()):
        (c1 if i % 2 == 0 else c2).text_input(key.replace("_", " "), value="", help=f"{spec.help} ({spec.describe()})",
                                              placeholder=", ".join(map(str, spec.choices)) if spec.choices else "",
                                              key=f"sweep.strategy.{key}", max_chars=SHORT_TEXT)
    with st.expander("Or a whole sweep file (YAML): random samples, an Optuna search, a reality check"):
        st.text_area("Sweep file", key="sweep.yaml", height=220, placeholder=SWEEP_EXAMPLE,
                     max_chars=limits().max_input_bytes,
                     help="the shape of `python -m engine sweep SWEEP.yaml`; it replaces the form when given")
    if st.session_state.get("sweep.yaml", "").strip():
        st.caption("The sweep file replaces the form: it is checked, and its runs counted, when launched.")
    else:
        sweep_preview()


def launch_sweep() -> None:
    from engine.sweeps.check import check_sweep_text

    try:
        text = sweep_text()
    except ConfigError as err:  # a value of the form that is not valid YAML
        st.session_state["sweep_problems"] = err.problems
        return
    with st.spinner("Checking the sweep in a separate process..."):
        result = check_sweep_text(text)
    if not result.ok:
        st.session_state["sweep_problems"] = result.problems
        return
    try:
        st.session_state["launched_sweep"] = the_lab.launch_sweep(result.sweep, principal=me())
        st.session_state["sweep_problems"] = []
    except ConfigError as err:  # a run's cost or the weights budget: nothing was queued
        st.session_state["sweep_problems"] = err.problems
    except AccessDenied as err:  # a quota (the largest sweep, runs queued, weights): nothing was queued
        st.session_state["sweep_problems"] = [str(err)]


# ---- Cost and launch --------------------------------------------------------------------------------------
if mode == "One run":
    if config is not None:
        from engine.training.cost import estimate

        st.info(f"Cost: {estimate(config).summary()}.", icon=":material/calculate:")
    unplaced = [line for key, lines in problems.items() if key not in shown for line in lines]
    for line in unplaced:  # the memory estimate, and anything not drawn above
        st.error(line, icon=":material/error:")
    st.button("Launch", type="primary", icon=":material/rocket_launch:", on_click=launch, key="launch")
    where = "each under its field" + (" or above" if unplaced else "")
    if st.session_state.pop("refused", 0) and problems:
        st.error(f"Nothing was queued: {sum(map(len, problems.values()))} problem(s), {where}.")
    elif problems:
        st.warning(f"{sum(map(len, problems.values()))} problem(s) to fix before launching, {where}.")
else:
    if st.button("Launch the sweep", type="primary", icon=":material/rocket_launch:", key="launch_sweep"):
        launch_sweep()
    for line in st.session_state.get("sweep_problems", []):
        st.error(line)
if "launched" in st.session_state:
    run_id = st.session_state.pop("launched")
    st.switch_page(PAGES["run"], query_params={"run": run_id})
if "launched_sweep" in st.session_state:
    sweep_id = st.session_state.pop("launched_sweep")
    st.session_state["compare_how"] = "By sweep"
    st.session_state["compare_sweep"] = sweep_id
    st.switch_page(PAGES["compare"])
