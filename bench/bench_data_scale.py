"""Data path at scale: peak memory and images/s of one training epoch, edgekd versus a bare torchvision loader.

    python bench/bench_data_scale.py --n 100000 --workers 4          # the issue's size
    python bench/bench_data_scale.py --n 10000 --workers 2 --threads 1  # a smaller run (say so with the numbers)
    python bench/bench_data_scale.py --cifar ../shared/data/cifar10-jpeg  # CIFAR-10-JPEG: new vs old path

Scale mode generates N JPEGs of mixed sizes around 256 px (each side 192..320), 10 classes, under --root
(reused when present), then runs each contender in its own process (so peak RSS is its own):

- edgekd: decode every file once into the disk-backed uint8 memory map (edgekd.data.sources.load_images,
  `workers` threads, 224x224 centre crops after resizing the shorter side to 256) and one pass of
  train_batches (random-resized-crop + flip, normalised float batches of 256). Second line: the same epoch
  again from the decoded store (what every later epoch and stage costs).
- torchvision: ImageFolder + DataLoader(num_workers=workers, batch 256) with RandomResizedCrop(224) +
  flip + ToTensor + Normalize: decoding every file every epoch, `workers` processes.

Memory: peak RSS (getrusage; children included for the DataLoader), and the peak of anonymous (RssAnon,
heap) and file-backed (RssFile, page cache of the memory map; reclaimable) resident memory sampled from
/proc every 0.1 s.

CIFAR mode extracts train.tar.gz (50,000 32x32 JPEGs) once under --root and times decode + one epoch of
train_batches (pad-crop + flip) with this tree's memory-map path and with the old in-memory path (the
load_images of commit febb1c0: decode into one np.stack), in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class MemSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = {"RssAnon": 0, "RssFile": 0}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            time.sleep(0.1)

    def sample(self) -> None:
        for line in Path("/proc/self/status").read_text().splitlines():
            key = line.split(":")[0]
            if key in self.peak:
                self.peak[key] = max(self.peak[key], int(line.split()[1]) * 1024)


def generate(root: Path, n: int, workers: int) -> None:
    marker = root / f".complete-{n}"
    if marker.is_file():
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_make_chunk, [(root, s, min(n, s + 1000)) for s in range(0, n, 1000)]))
    marker.write_text("ok")


def _make_chunk(args) -> None:
    import numpy as np
    from PIL import Image

    root, start, stop = args
    rng = np.random.default_rng(start)
    for i in range(start, stop):
        c = i % 10
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        h, w = (int(v) for v in rng.integers(192, 321, 2))
        small = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
        small[..., c % 3] = np.maximum(small[..., c % 3], 128 + 12 * c)  # a class cue, so it is not pure noise
        Image.fromarray(small).resize((w, h), Image.BILINEAR).save(d / f"{i:06d}.jpg", quality=85)


def _finish(sampler: MemSampler, out: dict, children: bool = False) -> dict:
    sampler.sample()
    sampler.stop.set()
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if children:
        usage += resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    out.update(peak_rss_bytes=usage, peak_anon_bytes=sampler.peak["RssAnon"], peak_file_bytes=sampler.peak["RssFile"])
    return out


def _start(tree: Path, size: int):
    """Sampler running, clock started, the folder indexed, and the Preprocessing of a size x size input."""
    import torch

    from edgekd.data.sizing import default_resize
    from edgekd.data.sources import index_folder
    from edgekd.manifest import Preprocessing

    torch.set_num_threads(1)
    sampler = MemSampler()
    sampler.start()
    t0 = time.perf_counter()
    index = index_folder(tree)
    pre = Preprocessing(input_size=(size, size), channels=3, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225],
                        resize_shorter=default_resize((size, size)), class_names=index.class_names)
    return sampler, t0, index, pre


def run_edgekd(root: Path, cache: Path, workers: int, size: int, batch: int) -> dict:
    from edgekd.data.batches import train_batches
    from edgekd.data.sources import fingerprint_files, load_images

    sampler, t0, index, pre = _start(root, size)
    split = load_images(index, pre, cache, fingerprint_files(index.files, root), workers=workers)
    t_decode = time.perf_counter() - t0
    epochs = []
    for epoch in range(2):
        t1 = time.perf_counter()
        seen = sum(len(y) for _, y, _ in train_batches(split, pre, batch_size=batch, seed=0, epoch=epoch,
                                                        augment="rrc_flip", drop_last=False))
        epochs.append(time.perf_counter() - t1)
    n = len(split)
    return _finish(sampler, {"images": n, "seen": seen, "index_and_decode_s": t_decode, "epoch_s": epochs,
                             "first_epoch_images_per_s": n / (t_decode + epochs[0]),
                             "later_epoch_images_per_s": n / epochs[1], "store_bytes": split.images.nbytes})


def run_torchvision(root: Path, workers: int, size: int, batch: int) -> dict:
    import torch
    from torchvision import datasets, transforms

    torch.set_num_threads(1)
    sampler = MemSampler()
    sampler.start()
    tf = transforms.Compose([transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    t0 = time.perf_counter()
    ds = datasets.ImageFolder(str(root), transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers)
    seen = sum(len(y) for _, y in loader)
    t = time.perf_counter() - t0
    return _finish(sampler, {"images": len(ds), "seen": seen, "epoch_s": t, "images_per_s": len(ds) / t}, children=True)


def run_cifar(tree: Path, cache: Path, workers: int, batch: int, which: str) -> dict:
    import numpy as np

    from edgekd.data.batches import train_batches
    from edgekd.data.sources import Split, fingerprint_files, load_images

    sampler, t0, index, pre = _start(tree, 32)
    if which == "new":
        split = load_images(index, pre, cache, fingerprint_files(index.files, tree), workers=workers)
    else:
        import importlib.util

        old_src = subprocess.run(["git", "-C", str(ROOT), "show", "febb1c0:edgekd/data/sources.py"], check=True,
                                 capture_output=True, text=True).stdout
        path = cache / "old_sources.py"
        cache.mkdir(parents=True, exist_ok=True)
        path.write_text(old_src)
        spec = importlib.util.spec_from_file_location("old_sources", path)
        old = importlib.util.module_from_spec(spec)
        sys.modules["old_sources"] = old  # dataclasses look their module up
        spec.loader.exec_module(old)
        s = old.load_images(old.index_folder(tree), (32, 32), 3, None, "x", workers=workers)
        split = Split(s.images, s.labels)
    t_decode = time.perf_counter() - t0
    t1 = time.perf_counter()
    for _ in train_batches(split, pre, batch_size=batch, seed=0, epoch=0, augment="crop_flip"):
        pass
    t_epoch = time.perf_counter() - t1
    return _finish(sampler, {"path": which, "images": len(split), "decode_s": t_decode, "epoch_s": t_epoch,
                             "in_memory": not isinstance(split.images, np.memmap)})


def child(args: argparse.Namespace) -> None:
    if args.child == "edgekd":
        out = run_edgekd(args.root, args.cache, args.workers, args.size, args.batch)
    elif args.child == "torchvision":
        out = run_torchvision(args.root, args.workers, args.size, args.batch)
    else:
        out = run_cifar(args.root, args.cache, args.workers, args.batch, args.child.split("-")[1])
    print("RESULT " + json.dumps(out))


def spawn(name: str, args: argparse.Namespace, root: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", name, "--root", str(root), "--cache", str(args.cache),
           "--workers", str(args.workers), "--size", str(args.size), "--batch", str(args.batch)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(line[len("RESULT "):])
    print(f"{name}: {json.dumps(out)}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--root", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/edgekd-scale-cache"))
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--cifar", type=Path, default=None, help="folder holding CIFAR-10-JPEG's train.tar.gz")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    import shutil

    shutil.rmtree(args.cache, ignore_errors=True)  # the first epoch must decode
    if args.cifar:
        root = args.root or Path("/tmp/edgekd-cifar10-jpeg")
        if not (root / "train").is_dir():
            root.mkdir(parents=True, exist_ok=True)
            subprocess.run(["tar", "-xzf", str(args.cifar / "train.tar.gz"), "-C", str(root)], check=True)
        old = spawn("cifar-old", args, root / "train")
        new = spawn("cifar-new", args, root / "train")
        print(f"CIFAR-10-JPEG train (50,000): decode+epoch new/old time ratio "
              f"{(new['decode_s'] + new['epoch_s']) / (old['decode_s'] + old['epoch_s']):.3f}; epoch-only "
              f"{new['epoch_s'] / old['epoch_s']:.3f}; peak RSS new {new['peak_rss_bytes'] / 1e9:.2f} GB, old "
              f"{old['peak_rss_bytes'] / 1e9:.2f} GB")
        return
    root = args.root or Path(f"/tmp/edgekd-scale-{args.n}")
    t0 = time.perf_counter()
    generate(root, args.n, max(1, args.workers))
    print(f"data: {args.n} JPEGs under {root} ({time.perf_counter() - t0:.0f} s to generate or find)", flush=True)
    tv = spawn("torchvision", args, root)
    ek = spawn("edgekd", args, root)
    print(f"images/s ratio edgekd/torchvision: first epoch (decode + epoch) "
          f"{ek['first_epoch_images_per_s'] / tv['images_per_s']:.3f}, later epochs "
          f"{ek['later_epoch_images_per_s'] / tv['images_per_s']:.3f}; peak RSS edgekd "
          f"{ek['peak_rss_bytes'] / 1e9:.2f} GB (anon {ek['peak_anon_bytes'] / 1e9:.2f}, file-backed "
          f"{ek['peak_file_bytes'] / 1e9:.2f}), torchvision {tv['peak_rss_bytes'] / 1e9:.2f} GB "
          f"(main anon {tv['peak_anon_bytes'] / 1e9:.2f})")


if __name__ == "__main__":
    main()
