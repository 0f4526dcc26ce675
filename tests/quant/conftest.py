"""A tiny conv net (conv-bn-relu x2, pool, linear) trained a few steps on seeded synthetic data."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("nncf")
nn = torch.nn


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images tinted with a fixed per-class colour: learnable through global pooling in a few steps."""
    colours = torch.randn(10, 3, generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 16, 16, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return x + 1.5 * colours[y][:, :, None, None], y


@pytest.fixture(scope="session")
def data() -> dict[str, torch.Tensor]:
    x, y = synthetic(512, seed=0)
    xe, ye = synthetic(256, seed=1)
    return {"x": x, "y": y, "x_eval": xe, "y_eval": ye}


@pytest.fixture(scope="session")
def trained(data) -> TinyNet:
    torch.manual_seed(0)
    model = TinyNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(60):
        idx = torch.arange(step * 64, step * 64 + 64) % len(data["x"])
        loss = nn.functional.cross_entropy(model(data["x"][idx]), data["y"][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def calib(data) -> torch.utils.data.DataLoader:
    """A DataLoader of (x, y) batches: 64 images."""
    dataset = torch.utils.data.TensorDataset(data["x"][:64], data["y"][:64])
    return torch.utils.data.DataLoader(dataset, batch_size=16, shuffle=False)


@pytest.fixture(scope="session")
def example(data) -> torch.Tensor:
    return data["x"][:2]


@pytest.fixture(scope="session")
def qmodel(trained, calib, example):
    from edgekd.quant import QuantSpec, quantize

    return quantize(trained, calib, QuantSpec(subset_size=64), example)


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())
