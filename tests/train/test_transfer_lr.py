"""The finetune backbone's learning-rate share: 1.0 for a teacher trained here, 0.1 for features learned
elsewhere, the user's value when given."""

import pytest

from edgekd.errors import UsageError
from edgekd.plan import CompressOptions, validate_options
from edgekd.targets import load_target


def _finetune(opts: CompressOptions):
    from edgekd.plan import build_specs

    specs = build_specs(opts, load_target("intel-cpu"), 1, (8, 8))
    return next(s for s in specs if s.name == "finetune").config


def test_default_follows_where_the_teacher_learned(tmp_path):
    pytest.importorskip("torch")
    weights = tmp_path / "teacher.pt"
    weights.write_bytes(b"not read by the plan")
    assert _finetune(CompressOptions(student="small_cnn")).backbone_lr_mult == 1.0
    assert _finetune(CompressOptions(student="small_cnn", pretrained=True)).backbone_lr_mult == 0.1
    assert _finetune(CompressOptions(student="small_cnn", teacher_weights=str(weights))).backbone_lr_mult == 0.1
    given = CompressOptions(student="small_cnn", pretrained=True, backbone_lr_mult=0.3)
    assert _finetune(given).backbone_lr_mult == 0.3


def test_other_transfers_neither_read_nor_take_it():
    pytest.importorskip("torch")
    assert "backbone_lr_mult" not in _finetune(CompressOptions(student="small_cnn", transfer="full")).model_fields_set
    with pytest.raises(UsageError, match="--backbone-lr-mult applies to --transfer hybrid or staged, not full"):
        validate_options({"transfer": "full", "backbone_lr_mult": 0.5})
    validate_options({"transfer": "staged", "backbone_lr_mult": 0.5})


@pytest.mark.parametrize("value", [0, -0.1, 1.5])
def test_out_of_range_is_a_usage_error(value):
    with pytest.raises(UsageError, match="backbone-lr-mult"):
        validate_options({"backbone_lr_mult": value})


def test_hybrid_phases_scale_the_backbone_only():
    pytest.importorskip("torch")
    from edgekd.models.registry import build_model
    from edgekd.stages.finetune import Config, _phases

    model = build_model("small_cnn", num_classes=3, in_channels=1, input_size=8)
    probe, full = _phases(Config(transfer="hybrid", backbone_lr_mult=0.25), model)
    head = [n for n, _ in model.named_parameters() if probe.trainable(n)]
    body = [n for n, _ in model.named_parameters() if not probe.trainable(n)]
    assert head and body
    assert {full.lr_mult(n) for n in head} == {1.0}
    assert {full.lr_mult(n) for n in body} == {0.25}
