"""model_card.md: the facts of bundle.json for people (what it is, how to feed it, how good and fast it is)."""

from __future__ import annotations

from typing import Any

from edgekd.bundle.schema import Bundle
from edgekd.data.roles import roles_line
from edgekd.preprocess import sample_text


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2%}"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} KB"


def _table(cols: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return out + ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]


def _verified(v: dict[str, Any]) -> str:
    if not v:
        return "-"
    if not v.get("loaded_and_run"):
        return f"not run here: {v.get('not_run', '?')}"
    parts = ["passed" if v.get("passed") else "FAILED"]
    for key, c in v.items():
        if key.startswith("vs_") and isinstance(c, dict) and "top1_agreement" in c:
            decided = c.get("top1_agreement_decided")
            extra = "" if decided is None else f" ({decided:.1%} of the decided {c['decided_fraction']:.0%})"
            parts.append(f"{key[3:]}: max_abs {c['max_abs']:.2g}, top-1 agree {c['top1_agreement']:.1%}{extra}")
    integer = v.get("integer") or {}
    if integer.get("summary"):
        parts.append(integer["summary"])
    if "weighted_ops" in integer:
        parts.append(f"INT8 weights {integer['weighted_ops_int8']}/{integer['weighted_ops']}")
    if "fake_quantize" in integer:
        parts.append(f"{integer['fake_quantize']} FakeQuantize; runtime {integer['runtime_heavy_layer_precisions']}")
    return "; ".join(parts)


def _preprocessing_steps(pre) -> list[str]:
    """The steps as edgekd applied them (edgekd/preprocess_reference.py; the bundle's preprocess.py)."""
    h, w = pre.input_size
    norm = [f"x = (raw / {pre.value_scale:g} - mean) / std per channel, mean {pre.mean}, std {pre.std}; "
            f"layout {pre.layout}, float32"]
    if pre.source == "array":
        return [f"1. raw {pre.channel_order} arrays of {h}x{w}, values in [0, {pre.value_scale:g}], no resize or crop",
                f"2. {norm[0]}"]
    mode = "RGB" if pre.channels == 3 else "L (grey, ITU-R 601-2 luma)"
    steps = [
        "decode the file with Pillow" + ("; apply the EXIF orientation tag (PIL.ImageOps.exif_transpose)"
                                         if pre.exif_transpose else ""),
        f"colour: 16-bit grey -> 8 bits (v * 255 / 65535, rounded); alpha composited over RGB "
        f"{tuple(pre.alpha_background)}; then convert to {mode}",
        f"resize, aspect kept, so the shorter side is {pre.resize_shorter} px (and the image covers {h}x{w}), "
        f"{pre.interpolation} interpolation{' with antialiasing (Pillow)' if pre.antialias else ''}",
        f"centre crop {h}x{w} (height x width): left = (width - {w}) // 2, top = (height - {h}) // 2",
        f"uint8 {pre.channel_order}, then {norm[0]}",
    ]
    return [f"{i}. {step}" for i, step in enumerate(steps, 1)] + [
        "", f"Input size: {pre.size_source or 'not recorded'}. preprocess.py in this bundle implements these steps "
            "(numpy + Pillow only): `python preprocess.py bundle.json IMAGE OUT.npy`."]


def model_card(b: Bundle) -> str:
    pre, p = b.preprocessing, b.pipeline
    q = p.get("quantization", {})
    lines = [
        f"# Model card: {b.name}", "",
        f"{b.task} with {len(b.classes)} classes, made by edgekd for target `{p.get('target')}` on {b.created_at}.", "",
        "## Input and output", "",
        f"- input `{b.input.name}`: {b.input.dtype}, shape {b.input.shape}, layout {b.input.layout}; "
        f"output `{b.output_name}`: raw logits, one per class (apply softmax for probabilities)",
        f"- classes, in output order: {', '.join(b.classes)}",
        *_sizes_line(b),
        "", "## Preprocessing (apply exactly this on the device)", "",
        *_preprocessing_steps(pre),
        "", "## How it was made", "",
        f"- teacher: {p.get('teacher', {}).get('arch')} (pretrained: {p.get('teacher', {}).get('pretrained')}), "
        f"transfer mode {p.get('transfer')}",
        f"- student: {p.get('student')}; losses: {p.get('losses')}",
        f"- quantization: {q.get('method')}; kept {q.get('kept')} (PTQ {_pct(q.get('ptq_top1'))}, QAD "
        f"{_pct(q.get('qad_top1'))}, FP32 {_pct(q.get('fp32_top1'))}); layers left in float: "
        f"{', '.join(p.get('float_layers') or []) or 'none'}",
        f"- data: {p.get('data')}; stage ids: {p.get('stages')}",
        f"- splits: {roles_line(p.get('splits') or {}) or 'not recorded'}. The quantization figures above are on "
        "val (they chose PTQ or QAD); the top-1 below is on test, measured once per artifact",
        "", "## Artifacts", "",
        *_table(("artifact", "format", "precision", "runtimes", "top-1 (eval set)", "size", "main file"),
                [[a.name, a.format, a.precision, ", ".join(a.runtimes), _pct(a.top1),
                  _size(sum(f.size_bytes for f in a.files)), a.files[0].path] for a in b.artifacts]),
        "", f"Top-1 is measured on eval_set.npz, which holds {_eval_set_text(b)} (never used for a decision), "
            "with the artifact itself, on this machine's CPU runtime. The run's verdict is on the whole test split.",
        "", "## Latency", "",
    ]
    lat_rows = [[a.name, c.target, c.percentile, f"{c.value_ms:.3f} ms", c.basis.upper() if c.basis == "estimated"
                 else c.basis, c.runtime, c.note] for a in b.artifacts for c in a.latency]
    lines += _table(("artifact", "target", "percentile", "latency", "basis", "runtime", "note"), lat_rows) if lat_rows \
        else ["No latency was measured or estimated for these artifacts."]
    lines += ["", "## Verification", "",
              f"Overall: **{'passed' if b.verification.get('passed') else 'FAILED'}**. Each artifact was loaded back "
              "from this folder and run on reference.npz's inputs and on the eval set.", ""]
    lines += _table(("artifact", "result"), [[a.name, _verified(a.verified)] for a in b.artifacts])
    lines += ["", "## Integration test", "",
              "reference.npz holds `raw` sample inputs, the preprocessed `inputs`, and `expected/<artifact>` logits. "
              "Preprocess `raw` with your code and compare with `inputs`; run your model on `inputs` and compare "
              "with `expected/<artifact>` (FP32: max_abs <= 1e-4 or max_rel <= 1e-3; INT8: the same top-1 class). "
              "`edgekd inspect BUNDLE` checks every file's sha256 against bundle.json.",
              "", "## Library versions", "", ", ".join(f"{k} {v}" for k, v in b.versions.items()), ""]
    return "\n".join(lines)


def _sizes_line(b: Bundle) -> list[str]:
    """The student's input size against the teacher's, when the student takes smaller images."""
    t = b.teacher_preprocessing
    if t is None:
        return []
    (h, w), (th, tw) = b.preprocessing.input_size, t.input_size
    return [f"- input size: the student takes {h}x{w} images (the shape and preprocessing above); its teacher saw the "
            f"data's {th}x{tw} (teacher_fp32 artifacts take {th}x{tw}: `teacher_preprocessing` in bundle.json)"]


def _eval_set_text(b: Bundle) -> str:
    """What eval_set.npz holds: 'a sample of 2,000 of the 10,000 test images (...)', or its image count."""
    return sample_text(b.eval_set_sample) or f"{b.verification.get('eval_images', '?')} images of the test split"
