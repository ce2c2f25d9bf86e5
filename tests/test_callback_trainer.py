"""The continual-evaluation callback and the store sink in a user's own Lightning Trainer."""

import lightning as L
import numpy as np
import torch

from engine.evaluation import ContinualEvaluation, StoreSink
from store.metrics.summary import load_run


class UserModel(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def blobs(classes, n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = {0: (-3.0, -3.0), 1: (3.0, -3.0), 2: (-3.0, 3.0), 3: (3.0, 3.0)}
    y = torch.tensor(classes).repeat_interleave(n)
    x = torch.tensor([centers[c] for c in y.tolist()]) + 0.5 * torch.randn(len(y), 2, generator=g)
    return x, y


def test_callback_records_continual_evaluation_in_a_users_trainer(store):
    torch.manual_seed(0)
    tasks = [blobs([0, 1]), blobs([2, 3])]
    tests = [blobs([0, 1], 20, seed=1), blobs([2, 3], 20, seed=1)]
    run_id = store.create_run({"note": "user's own trainer"}, name="mine", status="running")
    callback = ContinualEvaluation(tests, StoreSink(store, run_id), every=2)
    model = UserModel()
    for x, y in tasks:
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=True)
        trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, callbacks=[callback])
        trainer.fit(model, loader)
    store.flush()
    # 2 tasks x 128 samples / 16 = 8 steps a task: steps 1..16, evaluations at 2, 4, ..., 16
    assert store.sql("SELECT count(*), min(step), max(step) FROM metrics WHERE run_id = ? AND metric = 'train_loss'", [run_id]) == [(16, 1, 16)]
    evals = store.sql("SELECT DISTINCT step FROM metrics WHERE run_id = ? AND metric = 'acc' ORDER BY step", [run_id])
    assert [s for (s,) in evals] == list(range(2, 17, 2))
    assert store.sql("SELECT task, start_step, end_step FROM task_boundaries WHERE run_id = ? ORDER BY task", [run_id]) == [(1, 0, 8), (2, 8, 16)]
    R = load_run(store, run_id).R
    assert R.shape == (3, 2) and not np.isnan(R).any()
    assert R[1, 0] > 0.9  # learned task 1
    assert R[2, 1] > 0.9  # learned task 2
