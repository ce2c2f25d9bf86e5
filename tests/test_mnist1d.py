"""MNIST-1D: made locally by the mnist1d package's generator, never downloaded."""

import random
import socket

import numpy as np
import pytest

from engine.config import parse_config
from engine.datasets import DATASET_INFO, DATASETS, mnist1d


def test_mnist1d_is_generated_offline_with_ten_classes_of_40_values(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("MNIST-1D tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    import requests

    monkeypatch.setattr(requests, "get", no_network)
    mnist1d.generate.cache_clear()
    np.random.seed(123)
    random.seed(123)
    before = (np.random.random(), random.random())
    np.random.seed(123)
    random.seed(123)
    data = DATASETS["mnist1d"](seed=0, test_size=0.25)
    assert (np.random.random(), random.random()) == before  # the global generators are left as they were
    assert data.name == "mnist1d" and data.n_classes == 10 == DATASET_INFO["mnist1d"].n_classes
    assert data.train_x.shape == (3750, 40) and data.test_x.shape == (1250, 40)
    assert data.train_x.dtype == np.float32 and data.train_y.dtype == np.int64
    assert np.bincount(data.train_y).tolist() == [375] * 10 and np.bincount(data.test_y).tolist() == [125] * 10
    assert np.allclose(data.train_x.mean(0), 0, atol=1e-5) and np.allclose(data.train_x.std(0), 1, atol=1e-3)
    again = mnist1d.load(seed=0)
    assert np.array_equal(again.train_x, data.train_x)  # deterministic (and cached: no second generation)
    assert mnist1d.generate.cache_info().hits >= 1
    other = mnist1d.load(seed=1)
    assert not np.array_equal(other.test_y, data.test_y)  # the seed changes the split


def test_mnist1d_scenarios_validate():
    config = parse_config({"scenario": {"dataset": "mnist1d", "n_tasks": 5}})
    assert config.scenario.dataset == "mnist1d"
    from engine.config import ConfigError

    with pytest.raises(ConfigError) as err:
        parse_config({"scenario": {"dataset": "mnist1d", "n_tasks": 11}})
    assert err.value.problems == ["scenario.n_tasks = 11: must be at most 10: mnist1d has 10 classes to share out"]
