"""Distributed training for real: two torch.distributed ranks (gloo, CPU, loopback).

Each rank is its own process (started with spawn, as ``torch.multiprocessing``
does) that builds a ``BatchLoader`` with ``rank``/``world_size`` and one
worker, and trains a tiny convolutional net wrapped in
``DistributedDataParallel`` on every batch for two epochs.  The ranks write
what they saw; the test checks that each epoch the two shares are disjoint
and cover the eligible samples, that both ranks ran the same number of
steps, and that after training the ranks' parameters are identical (DDP
averaged the gradients) and differ from the initial ones.
"""

from __future__ import annotations

import json
import multiprocessing
import socket
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

import dicontour
from dicontour.phantom import write_phantom

torch = pytest.importorskip("torch", reason="torch is not installed (pip install dicontour[torch])")
dist = pytest.importorskip("torch.distributed", reason="torch.distributed is not available")

WORLD = 2
EPOCHS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_rank(rank: int, port: int, root: str, out: str) -> None:
    """One rank: join the group, load its share, take a DDP step per batch, write the record."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(seconds=60),
    )
    try:
        torch.manual_seed(rank)  # different on purpose: DDP must broadcast rank 0's weights
        net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1)
        )
        model = torch.nn.parallel.DistributedDataParallel(net)
        initial = torch.cat([p.detach().flatten() for p in model.parameters()]).numpy().copy()
        optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
        index = dicontour.scan(root)
        epochs: list[list[int]] = []
        steps: list[int] = []
        with dicontour.BatchLoader(
            index, batch_size=4, channels=True, rank=rank, world_size=WORLD, workers=1, seed=3
        ) as loader:
            for _ in range(EPOCHS):
                seen: list[int] = []
                count = 0
                for batch in loader:
                    seen += batch.meta.index.tolist()
                    optimiser.zero_grad()
                    logits = model(torch.from_numpy(batch.images))
                    target = torch.from_numpy(batch.masks).float()
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
                    loss.backward()  # DDP all-reduces the gradients here
                    optimiser.step()
                    count += 1
                epochs.append(seen)
                steps.append(count)
        final = torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()
        np.save(Path(out) / f"params-{rank}.npy", final)
        np.save(Path(out) / f"initial-{rank}.npy", initial)
        record = {"epochs": epochs, "steps": steps, "eligible": index.select("i")}
        (Path(out) / f"rank-{rank}.json").write_text(json.dumps(record))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_two_ranks_share_each_epoch_and_stay_in_step(tmp_path: Path) -> None:
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this build")
    root = tmp_path / "data"
    # 3 patients x 4 i-slices: 12 samples, an even split (no wrap-around padding).
    write_phantom(root, patients=3, slices=8, shape=(32, 32), faults=False)
    context = multiprocessing.get_context("spawn")
    port = free_port()
    ranks = [
        context.Process(target=train_rank, args=(rank, port, str(root), str(tmp_path)))
        for rank in range(WORLD)
    ]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(150)
    for process in ranks:
        if process.is_alive():
            process.kill()
            process.join()
    assert [p.exitcode for p in ranks] == [0] * WORLD

    records = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in range(WORLD)]
    eligible = set(records[0]["eligible"])
    assert len(eligible) == 12
    for epoch in range(EPOCHS):
        shares = [record["epochs"][epoch] for record in records]
        assert set(shares[0]).isdisjoint(shares[1])
        assert sorted(shares[0] + shares[1]) == sorted(eligible)
        assert len(shares[0]) == len(shares[1]) == 6
    assert records[0]["steps"] == records[1]["steps"] == [2] * EPOCHS  # 4 + 2 per rank
    # Epochs differ in order (a new permutation each epoch), not in what they cover.
    assert records[0]["epochs"][0] != records[0]["epochs"][1]

    params = [np.load(tmp_path / f"params-{r}.npy") for r in range(WORLD)]
    initial = [np.load(tmp_path / f"initial-{r}.npy") for r in range(WORLD)]
    np.testing.assert_array_equal(initial[0], initial[1])  # DDP broadcast rank 0's weights
    np.testing.assert_array_equal(params[0], params[1])  # the same averaged steps
    assert not np.allclose(params[0], initial[0])  # and the steps did change them
