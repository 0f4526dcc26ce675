"""edgekd from Python: your own nn.Module as the teacher (README, "From Python")."""
import torch
from torch import nn

import edgekd


class MyNet(nn.Module):  # your architecture: edgekd knows nothing about it
    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                                      nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classify = nn.Linear(64, classes)

    def forward(self, x):
        return self.classify(self.features(x))


torch.manual_seed(0)
report = edgekd.compress(teacher=MyNet(), data="digits", target="intel-cpu", transfer="full", student="small_cnn",
                         mean=[0.5], std=[0.5], run_dir="runs/from-python")
print(report.verdict, report.exit_code)
for row in report.models:
    print(f"{row.role:<14} {row.model:<24} test top-1 {row.top1:.2%}  p50 {row.latency.median_ms:.3f} ms")
