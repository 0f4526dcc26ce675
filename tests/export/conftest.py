from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn


class TinyNet(nn.Module):
    """conv-bn-relu x2, pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        )  # fmt: skip
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


@pytest.fixture()
def tiny() -> TinyNet:
    torch.manual_seed(0)
    model = TinyNet()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for bn in (model.features[1], model.features[4]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture()
def inputs():
    return torch.randn(32, 3, 16, 16, generator=torch.Generator().manual_seed(3)).numpy()
