"""The mode count and weight labels behind the weight-distribution figure (``benchmarks.weights``)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("scipy")
pytest.importorskip("matplotlib")

from benchmarks import weights
from benchmarks.weights import count_modes, kde, weight_label
from sb3_cemah.common.policy_network import FlatPolicyNetwork


def modes(samples: np.ndarray) -> int:
    return count_modes(kde(samples)[1])


def test_kde_is_a_density() -> None:
    grid, density = kde(np.random.default_rng(0).normal(2.0, 0.5, 1000))
    assert np.sum(density) * (grid[1] - grid[0]) == pytest.approx(1.0, abs=1e-3)
    assert grid[np.argmax(density)] == pytest.approx(2.0, abs=0.15)


@pytest.mark.parametrize("seed", range(5))
def test_count_modes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    assert modes(rng.normal(0.0, 1.0, 1000)) == 1
    assert modes(np.concatenate([rng.normal(-3.0, 1.0, 500), rng.normal(3.0, 1.0, 500)])) == 2
    # A minor component still counts when its peak reaches the threshold, as the paper's mixtures of Dirac deltas.
    assert modes(np.concatenate([rng.normal(0.0, 0.1, 800), rng.normal(1.0, 0.1, 200)])) == 2
    assert modes(np.repeat([0.0, 1.0, 2.0], [400, 300, 300])) == 3
    assert modes(np.full(100, 0.7)) == 1


def test_weight_label() -> None:
    network = FlatPolicyNetwork(input_dim=3, output_dim=2, net_arch=(4,))
    labels = [weight_label(network, index) for index in range(network.n_params)]
    # Layer 1: W (3 x 4, row-major) then b (4); layer 2: W (4 x 2) then b (2).
    assert labels[:2] == ["W1[0, 0]", "W1[0, 1]"]
    assert labels[4] == "W1[1, 0]"
    assert labels[11:13] == ["W1[2, 3]", "b1[0]"]
    assert labels[16:18] == ["W2[0, 0]", "W2[0, 1]"]
    assert labels[-2:] == ["b2[0]", "b2[1]"]
    assert len(set(labels)) == network.n_params
    with pytest.raises(IndexError):
        weight_label(network, network.n_params)


def test_rebuild_from_the_committed_run(tmp_path: Path) -> None:
    """``--from`` redraws the figure and rebuilds the README's blocks from the saved samples, without training."""
    committed = Path(__file__).resolve().parents[2] / "docs" / "benchmarks" / "weights"
    weights.main(["--from", str(committed), "--output", str(tmp_path)])

    def blocks(text: str) -> dict[str, str]:
        return dict(re.findall(r"<!-- generated: (\w+) -->\n(.*?)\n<!-- end generated: \1 -->", text, flags=re.DOTALL))

    rebuilt = blocks((tmp_path / "README.md").read_text())
    assert set(rebuilt) == {"run", "setup", "findings", "statistics"}
    assert rebuilt == blocks((committed / "README.md").read_text())
    assert (tmp_path / "weights.png").stat().st_size > 0
    assert (tmp_path / "statistics.csv").read_text() == (committed / "statistics.csv").read_text()
    assert sorted(np.load(tmp_path / "samples.npz").files) == sorted(np.load(committed / "samples.npz").files)
