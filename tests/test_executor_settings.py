"""lab.toml's [executor] table, $CL_LAB_RAY_ADDRESS and --executor (engine/core/executor_settings.py)."""

import pytest

from engine.core.executor_settings import ADDRESS_ENV, ExecutorSettings, executor_settings
from engine.core.limits import SettingsError


def settings(tmp_path, text: str):
    path = tmp_path / "lab.toml"
    path.write_text(text)
    return path


def test_local_is_the_default_and_ray_defaults_to_the_cluster_of_this_machine(tmp_path, monkeypatch):
    monkeypatch.delenv(ADDRESS_ENV, raising=False)
    assert executor_settings(path=tmp_path / "none.toml") == ExecutorSettings("local", None)
    assert executor_settings(path=settings(tmp_path, '[executor]\nkind = "ray"\n')) == ExecutorSettings("ray", "auto")
    path = settings(tmp_path, '[executor]\nkind = "ray"\naddress = "10.0.0.5:6379"\n')
    assert executor_settings(path=path).address == "10.0.0.5:6379"
    assert executor_settings("local", path=path) == ExecutorSettings()  # --executor over lab.toml
    monkeypatch.setenv(ADDRESS_ENV, "head.example.org:6380")
    assert executor_settings(path=path).address == "head.example.org:6380"  # the environment over lab.toml


@pytest.mark.parametrize("text, line", [
    ('[executor]\nkind = "slurm"\n', "executor.kind = 'slurm': must be one of local, ray"),
    ('[executor]\nkind = "ray"\naddress = "x; rm -rf /"\n', "executor.address = 'x; rm -rf /': must be"),
    ('[executor]\nkind = "ray"\naddress = "h:70000"\n', "executor.address = 'h:70000': must be"),
    ('[executor]\nkind = "ray"\naddress = 5\n', "executor.address: must be a string"),
    ('[executor]\nkinds = "ray"\n', "executor.kinds: is not a known setting"),
    ('executor = 3\n', "executor: must be a table"),
])
def test_a_wrong_setting_is_one_line_naming_it(tmp_path, monkeypatch, text, line):
    monkeypatch.delenv(ADDRESS_ENV, raising=False)
    with pytest.raises(SettingsError) as err:
        executor_settings(path=settings(tmp_path, text))
    assert str(err.value).startswith(line) and "\n" not in str(err.value)


def test_a_wrong_cli_kind_or_environment_address_names_where_it_came_from(tmp_path, monkeypatch):
    with pytest.raises(SettingsError, match=r"^--executor = 'k8s': must be one of"):
        executor_settings("k8s", path=tmp_path / "none.toml")
    monkeypatch.setenv(ADDRESS_ENV, "not an address")
    with pytest.raises(SettingsError, match=rf"^\${ADDRESS_ENV} = 'not an address'"):
        executor_settings("ray", path=tmp_path / "none.toml")
