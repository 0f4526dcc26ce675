"""Device identity: whether this machine *is* the device a target profile describes.

"Measured on the target" needs more than the same CPU architecture and an installed runtime: an AMD runner is
not the `intel-cpu` Sapphire Rapids profile, and an aarch64 server is not a Raspberry Pi 5. A profile states
its device in checkable terms (`device.identity`); this module reads the same facts from this machine and says
whether they match, and if not, why (one reason per failed check).

Checked facts (each optional; a profile states those that define its device):
- cpu_vendor: /proc/cpuinfo `vendor_id` (GenuineIntel, AuthenticAMD), exact;
- cpu_model: regex searched in the CPU model name (/proc/cpuinfo `model name`; on Arm boards the device-tree
  model, since Arm cpuinfo has no model name);
- cpu_flags: ISA flags that must all be present, by their Linux names (x86 /proc/cpuinfo `flags`, e.g.
  avx512_vnni, amx_int8; arm64 `Features` hwcaps, e.g. asimddp, i8mm). Names are validated against a known
  list when the profile loads: a typo would otherwise make a profile that never matches;
- board: regex searched in /proc/device-tree/model (Raspberry Pi, Jetson);
- os: linux | android;
- gpu_name (regex) and compute_capability ("8.7"): the first NVIDIA GPU (nvidia-smi);
- openvino_device_name: regex searched in OpenVINO's FULL_DEVICE_NAME of the profile's OpenVINO device
  (asks OpenVINO, so it is read only when a profile states it and OpenVINO is installed).
A profile without an identity matches on architecture alone (the rule before identities), and says so.
Imports no runtime at module level.
"""

from __future__ import annotations

import difflib
import functools
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from edgekd.runtimes.host import host_arch

# Linux x86 /proc/cpuinfo flag names (arch/x86/include/asm/cpufeatures.h, the ones a profile may ask for)
X86_FLAGS = frozenset("""
fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 pn clflush dts acpi mmx fxsr sse sse2 ss
ht tm ia64 pbe syscall mp nx mmxext fxsr_opt pdpe1gb rdtscp lm 3dnowext 3dnow constant_tsc rep_good nopl xtopology
nonstop_tsc cpuid tsc_known_freq pni pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 cid sdbg fma cx16 xtpr
pdcm pcid dca sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm
cmp_legacy svm extapic cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw ibs xop skinit wdt lwp fma4 tce
nodeid_msr tbm topoext perfctr_core perfctr_nb bpext perfctr_llc mwaitx cpuid_fault cat_l3 cdp_l3 invpcid_single
hw_pstate ssbd mba ibrs ibpb stibp ibrs_enhanced tpr_shadow vnmi flexpriority ept vpid fsgsbase tsc_adjust sgx bmi1
hle avx2 fdp_excptn_only smep bmi2 erms invpcid rtm cqm mpx rdt_a avx512f avx512dq rdseed adx smap avx512ifma
clflushopt clwb intel_pt avx512pf avx512er avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves
avx_vnni avx512_bf16 clzero irperf xsaveerptr rdpru wbnoinvd amd_ppin arat npt lbrv svm_lock nrip_save tsc_scale
vmcb_clean flushbyasid decodeassists pausefilter pfthreshold avic v_vmsave_vmload vgif avx512vbmi umip pku ospke
waitpkg avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg tme avx512_vpopcntdq la57 rdpid
bus_lock_detect cldemote movdiri movdir64b enqcmd sgx_lc fsrm avx512_4vnniw avx512_4fmaps md_clear serialize
tsxldtrk pconfig arch_lbr ibt amx_bf16 avx512_fp16 amx_tile amx_int8 amx_fp16 amx_complex flush_l1d
arch_capabilities avx_vnni_int8 avx_ne_convert avx_ifma prefetchiti avx512_vp2intersect sha512 sm3 sm4 user_shstk
split_lock_detect vme_shadow ht_clock
""".split())

# Linux arm64 hwcap names as /proc/cpuinfo `Features` prints them (arch/arm64/kernel/cpuinfo.c)
ARM64_FLAGS = frozenset("""
fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop sha3 sm3 sm4
asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg dcpodp sve2 sveaes svepmull svebitperm
svesha3 svesm4 flagm2 frint svei8mm svef32mm svef64mm svebf16 i8mm bf16 dgh rng bti mte ecv afp rpres mte3 sme
sme_i16i64 sme_f64f64 sme_i8i32 sme_f16f32 sme_b16f32 sme_f32f32 sme_fa64 wfxt ebf16 sve_ebf16 cssc rprfm sve2p1
sme2 sme2p1 sme_i16i32 sme_bi32i32 sme_b16b16 sme_f16f16 mops hbc sve_b16b16 lrcpc3 lse128 fpmr lut faminmax
f8cvt f8fma f8dp4 f8dp2 f8e4m3 f8e5m2 sme_lutv2 sme_f8f16 sme_f8f32 sme_sf8fma sme_sf8dp4 sme_sf8dp2 poe
""".split())
KNOWN_FLAGS = X86_FLAGS | ARM64_FLAGS


class DeviceIdentity(BaseModel):
    """What a device is, in facts this machine can check (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_vendor: str | None = None
    cpu_model: str | None = None  # regex, searched
    cpu_flags: list[str] = []
    board: str | None = None  # regex on /proc/device-tree/model
    os: Literal["linux", "android"] | None = None
    gpu_name: str | None = None  # regex on the NVIDIA GPU name
    compute_capability: str | None = None
    openvino_device_name: str | None = None  # regex on FULL_DEVICE_NAME of the profile's OpenVINO device

    @field_validator("cpu_flags")
    @classmethod
    def _known_flags(cls, flags: list[str]) -> list[str]:
        for flag in flags:
            if flag not in KNOWN_FLAGS:
                near = difflib.get_close_matches(flag, sorted(KNOWN_FLAGS), n=1, cutoff=0.6)
                hint = f" (did you mean {near[0]}?)" if near else ""
                raise ValueError(f"unknown ISA flag name '{flag}'{hint}: use the Linux /proc/cpuinfo name "
                                 "(x86 'flags', arm64 'Features'), e.g. avx512_vnni, amx_int8, asimddp")
        return flags

    @field_validator("cpu_model", "board", "gpu_name", "openvino_device_name")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"'{value}' is not a valid regular expression ({exc})") from None
        return value


@dataclass(frozen=True)
class HostFacts:
    """This machine's identity facts (None / empty where the OS does not tell)."""

    arch: str
    cpu_vendor: str | None = None
    cpu_model: str | None = None
    cpu_flags: frozenset[str] = frozenset()
    board: str | None = None
    os: str = "linux"
    gpu_name: str | None = None
    compute_capability: str | None = None
    openvino_names: dict[str, str] = field(default_factory=dict)  # device -> FULL_DEVICE_NAME (when read)

    def summary(self) -> str:
        parts = [self.arch, self.cpu_model or "unknown CPU"]
        if self.board:
            parts.append(self.board)
        if self.gpu_name:
            parts.append(f"{self.gpu_name} (sm {self.compute_capability or '?'})")
        return ", ".join(parts)


@dataclass(frozen=True)
class IdentityCheck:
    matches: bool
    reasons: tuple[str, ...]  # why not (empty when it matches)
    checked: tuple[str, ...]  # what was compared
    note: str = ""

    @property
    def why(self) -> str:
        return "; ".join(self.reasons) if self.reasons else (self.note or "matches " + ", ".join(self.checked))


def _cpuinfo(path: Path) -> dict[str, str]:
    """The first processor block's fields, plus arm64 `Features` (printed per core)."""
    out: dict[str, str] = {}
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        if ":" not in line:
            continue
        key, _, value = line.partition(":")
        out.setdefault(key.strip().lower(), value.strip())
    return out


def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().decode(errors="replace").rstrip("\x00").strip() or None
    except OSError:
        return None


def _nvidia() -> tuple[str | None, str | None]:
    if (exe := shutil.which("nvidia-smi")) is None:
        return None, None
    try:
        out = subprocess.run([exe, "--id=0", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None, None
    parts = [p.strip() for p in (out.stdout.strip().splitlines() or [""])[0].split(",")]
    if out.returncode != 0 or len(parts) < 2:
        return None, None
    return parts[0] or None, parts[1] or None


HOST_ROOT_ENV = "EDGEKD_HOST_ROOT"


def _recorded_arch(info: dict[str, str]) -> str:
    """The architecture a recorded /proc/cpuinfo belongs to: x86 prints `flags`, arm64 `Features` and
    `CPU implementer`."""
    if "cpu implementer" in info or ("features" in info and "flags" not in info):
        return "aarch64"
    return "x86_64" if "flags" in info or "vendor_id" in info else host_arch()


def read_host_facts(root: Path = Path("/")) -> HostFacts:
    """Read a machine's facts: this one's, or (`root` other than /) those recorded in a copy of another
    machine's /proc tree, whose architecture is then read from its cpuinfo and which has no GPU."""
    info = _cpuinfo(root / "proc" / "cpuinfo")
    flags = info.get("flags") or info.get("features") or ""
    board = _read(root / "proc" / "device-tree" / "model")
    here = root == Path("/")
    model = info.get("model name") or info.get("hardware") or board or ((platform.processor() or None) if here
                                                                          else None)
    android = (here and "ANDROID_ROOT" in os.environ) or (root / "system" / "build.prop").is_file()
    gpu, cc = _nvidia() if here else (None, None)
    return HostFacts(arch=host_arch() if here else _recorded_arch(info), cpu_vendor=info.get("vendor_id"), cpu_model=model,
                     cpu_flags=frozenset(flags.split()), board=board, os="android" if android else "linux",
                     gpu_name=gpu, compute_capability=cc)


def host_root() -> Path:
    """Where host facts are read: / , or the recorded /proc tree that EDGEKD_HOST_ROOT names (tests set it to
    run as an Intel Xeon, an AMD EPYC or a Raspberry Pi; a user can replay another machine's identity)."""
    root = Path(os.environ.get(HOST_ROOT_ENV) or "/")
    if root != Path("/") and not (root / "proc" / "cpuinfo").is_file():
        from edgekd.errors import UsageError

        raise UsageError(f"{HOST_ROOT_ENV}={root} holds no proc/cpuinfo: point it at a recorded /proc tree "
                         "(tests/fixtures/hosts/ has examples) or unset it")
    return root


def host_facts() -> HostFacts:
    return _host_facts(host_root())


@functools.lru_cache(maxsize=4)
def _host_facts(root: Path) -> HostFacts:
    return read_host_facts(root)


def _openvino_name(device: str) -> str | None:
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        return None
    import openvino as ov

    core = ov.Core()
    if device not in core.available_devices:
        return None
    try:
        return str(core.get_property(device, "FULL_DEVICE_NAME"))
    except Exception:  # noqa: BLE001 - a plugin that cannot say is "unknown"
        return None


def match(identity: DeviceIdentity | None, arch: str, facts: HostFacts | None = None,
          openvino_device: str | None = None) -> IdentityCheck:
    """Whether `facts` (default: this machine) is the device `identity` and `arch` describe, and why not."""
    facts = facts or host_facts()
    reasons: list[str] = []
    checked = ["arch"]
    if arch not in (facts.arch, "any"):
        reasons.append(f"architecture is {facts.arch}, the profile's device is {arch}")
    if identity is None:
        return IdentityCheck(not reasons, tuple(reasons), tuple(checked),
                             note="the profile states no device identity: matched on architecture only")
    if identity.os is not None:
        checked.append("os")
        if facts.os != identity.os:
            reasons.append(f"OS is {facts.os}, the profile wants {identity.os}")
    if identity.cpu_vendor is not None:
        checked.append("cpu_vendor")
        if facts.cpu_vendor != identity.cpu_vendor:
            reasons.append(f"CPU vendor is {facts.cpu_vendor or 'unknown'}, the profile wants {identity.cpu_vendor}")
    if identity.cpu_model is not None:
        checked.append("cpu_model")
        if not facts.cpu_model or not re.search(identity.cpu_model, facts.cpu_model):
            reasons.append(f"CPU model '{facts.cpu_model or 'unknown'}' does not match /{identity.cpu_model}/")
    if identity.cpu_flags:
        checked.append("cpu_flags")
        missing = [f for f in identity.cpu_flags if f not in facts.cpu_flags]
        if missing:
            where = "" if facts.cpu_flags else " (no CPU flags readable here)"
            reasons.append(f"CPU lacks {', '.join(missing)}{where}")
    if identity.board is not None:
        checked.append("board")
        if not facts.board or not re.search(identity.board, facts.board):
            reasons.append(f"board '{facts.board or 'unknown'}' does not match /{identity.board}/")
    if identity.gpu_name is not None:
        checked.append("gpu_name")
        if not facts.gpu_name or not re.search(identity.gpu_name, facts.gpu_name):
            reasons.append(f"GPU '{facts.gpu_name or 'none found'}' does not match /{identity.gpu_name}/")
    if identity.compute_capability is not None:
        checked.append("compute_capability")
        if facts.compute_capability != identity.compute_capability:
            reasons.append(f"compute capability {facts.compute_capability or 'unknown'}, the profile wants "
                           f"{identity.compute_capability}")
    if identity.openvino_device_name is not None and openvino_device:
        checked.append("openvino_device_name")
        name = facts.openvino_names.get(openvino_device) if facts.openvino_names else _openvino_name(openvino_device)
        if not name or not re.search(identity.openvino_device_name, name):
            reasons.append(f"OpenVINO {openvino_device} is '{name or 'not available'}', the profile wants "
                           f"/{identity.openvino_device_name}/")
    return IdentityCheck(not reasons, tuple(reasons), tuple(checked))


def check_target(target, facts: HostFacts | None = None) -> IdentityCheck:
    """`match` for a TargetProfile (its device identity, architecture and OpenVINO device)."""
    ov_device = target.runtime.device if target.runtime.name == "openvino" else None
    return match(target.device.identity, target.device.arch, facts, ov_device)
