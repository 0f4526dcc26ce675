"""Device identity: a profile states what its device is; this machine matches it or says why not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekd.cli.app import _register, app
from edgekd.runtimes.identity import DeviceIdentity, HostFacts, check_target, match, read_host_facts
from edgekd.targets import available_targets, load_target

_register()
runner = CliRunner()

SPR = HostFacts(arch="x86_64", cpu_vendor="GenuineIntel", cpu_model="Intel(R) Xeon(R) Platinum 8480+",
                cpu_flags=frozenset("avx2 fma avx512f avx512_vnni amx_tile amx_int8 amx_bf16 avx512_fp16".split()))
EPYC = HostFacts(arch="x86_64", cpu_vendor="AuthenticAMD", cpu_model="AMD EPYC 9654 96-Core Processor",
                 cpu_flags=frozenset("avx2 fma avx512f avx512_vnni avx512_bf16".split()))
LAPTOP = HostFacts(arch="x86_64", cpu_vendor="GenuineIntel", cpu_model="Intel(R) Core(TM) i7-1185G7",
                   cpu_flags=frozenset("avx2 fma avx512f avx512_vnni".split()))
GRAVITON = HostFacts(arch="aarch64", cpu_model=None, cpu_flags=frozenset("fp asimd asimddp i8mm".split()))
PI5 = HostFacts(arch="aarch64", board="Raspberry Pi 5 Model B Rev 1.0", cpu_flags=frozenset("fp asimd asimddp".split()))


def test_intel_cpu_profile_matches_sapphire_rapids_only() -> None:
    t = load_target("intel-cpu")
    assert check_target(t, SPR).matches
    amd = check_target(t, EPYC)
    assert not amd.matches and "AuthenticAMD" in amd.why and "amx_int8" in amd.why
    laptop = check_target(t, LAPTOP)
    assert not laptop.matches and "Xeon" in laptop.why and "amx_int8" in laptop.why


def test_any_aarch64_box_is_not_a_raspberry_pi() -> None:
    t = load_target("raspberry-pi5")
    assert check_target(t, PI5).matches
    server = check_target(t, GRAVITON)
    assert not server.matches and "board 'unknown'" in server.why


def test_no_identity_matches_on_architecture_only() -> None:
    res = match(None, "x86_64", SPR)
    assert res.matches and "architecture only" in res.why
    assert not match(None, "aarch64", SPR).matches


def test_gpu_identity_names_what_differs() -> None:
    ident = DeviceIdentity(gpu_name="Orin", compute_capability="8.7")
    here = HostFacts(arch="aarch64", gpu_name="NVIDIA A100-SXM4-80GB", compute_capability="8.0")
    res = match(ident, "aarch64", here)
    assert not res.matches and "A100" in res.why and "8.0" in res.why
    assert match(ident, "aarch64", HostFacts(arch="aarch64", gpu_name="Orin", compute_capability="8.7")).matches


def test_reads_facts_from_proc(tmp_path: Path) -> None:
    (tmp_path / "proc" / "device-tree").mkdir(parents=True)
    (tmp_path / "proc" / "cpuinfo").write_text(
        "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd asimddp\nCPU part\t: 0xd0b\n\n"
        "processor\t: 1\nFeatures\t: fp asimd asimddp\n")
    (tmp_path / "proc" / "device-tree" / "model").write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    facts = read_host_facts(tmp_path)
    assert facts.board == "Raspberry Pi 5 Model B Rev 1.0" and "asimddp" in facts.cpu_flags
    assert check_target(load_target("raspberry-pi5"), HostFacts(**{**facts.__dict__, "arch": "aarch64"})).matches


def test_unknown_isa_flag_is_one_line_exit_2(tmp_path: Path) -> None:
    text = Path(available_targets()["intel-cpu"]).read_text().replace("amx_int8", "amx_int9")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    res = runner.invoke(app, ["targets", str(bad)])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "unknown ISA flag name 'amx_int9'" in lines[0] and "amx_int8" in lines[0]


def _cpuinfo_text() -> str:
    """The /proc/cpuinfo edgekd reads: this machine's, or the recorded one EDGEKD_HOST_ROOT names."""
    from edgekd.runtimes.identity import host_root

    return (host_root() / "proc" / "cpuinfo").read_text()


def _proc_flags() -> set[str]:
    try:
        text = _cpuinfo_text()
    except OSError:
        pytest.skip("no /proc/cpuinfo on this machine")
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def test_targets_check_is_right_on_this_machine() -> None:
    """Every shipped profile: --check agrees with a direct reading of /proc/cpuinfo for the CPU profiles."""
    flags = _proc_flags()
    res = runner.invoke(app, ["targets", "--check", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)["profiles"]}
    assert set(rows) == set(available_targets())
    import platform

    x86 = platform.machine().lower() in ("x86_64", "amd64")
    sapphire = x86 and {"amx_int8", "amx_bf16", "avx512_vnni", "avx512_fp16"} <= flags and \
        "Xeon" in _cpuinfo_text()
    assert rows["intel-cpu"]["identity_matches"] is sapphire
    assert rows["cpu-ort"]["identity_matches"] is (x86 and {"avx2", "fma"} <= flags)
    if x86:
        for name in ("raspberry-pi5", "jetson", "jetson-agx-orin", "android-arm64"):
            assert not rows[name]["identity_matches"] and "architecture is x86_64" in rows[name]["why"]


@pytest.mark.parametrize("host, expect", [
    ("intel-xeon", {"intel-cpu": True, "amd-cpu": False, "raspberry-pi5": False}),
    ("amd-epyc", {"intel-cpu": False, "raspberry-pi5": False}),
    ("raspberry-pi5", {"intel-cpu": False, "raspberry-pi5": True}),
])
def test_recorded_hosts_match_their_own_profiles_only(as_host, host: str, expect: dict[str, bool]) -> None:
    """The host-matching logic on recorded /proc trees of both x86 vendors and an arm64 board, read through
    EDGEKD_HOST_ROOT as every caller reads them (host_facts)."""
    from edgekd.runtimes.identity import host_facts
    from edgekd.targets import available_targets

    as_host(host)
    facts = host_facts()
    assert facts.gpu_name is None and facts.cpu_flags
    assert facts.arch == ("aarch64" if host == "raspberry-pi5" else "x86_64")
    for name, matches in expect.items():
        if name not in available_targets():
            continue
        check = check_target(load_target(name))
        assert check.matches is matches, (name, check.why)
        if not matches:
            assert check.reasons


def test_host_root_without_cpuinfo_is_a_usage_error(tmp_path: Path, monkeypatch) -> None:
    from edgekd.errors import UsageError
    from edgekd.runtimes.identity import host_facts

    monkeypatch.setenv("EDGEKD_HOST_ROOT", str(tmp_path))
    with pytest.raises(UsageError, match="EDGEKD_HOST_ROOT"):
        host_facts()
