"""pytest-benchmark suite: latency of every stage, separate from the pass/fail suite in tests/.

``pytest benchmarks --benchmark-only --benchmark-autosave`` (``make bench``) times each stage of
one target on ``--device`` (default cpu) and saves the run under ``.benchmarks/``;
``--benchmark-compare`` (optionally ``--benchmark-compare-fail=median:10%``) compares with the last
saved run. On CPU the shrunken configuration runs in fp32 so this finishes in seconds; on
``cuda:N`` the full model runs in bf16 and every benchmark also records TFLOP/s, MFU and the
roofline time in ``extra_info``. The GPU (name, capability, memory, CUDA) goes into
``machine_info["harness"]``, so comparing runs from different GPUs warns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from harness.gpu.measure import decode_label, kv_cache_reset, run_calls
from harness.gpu.peaks import ResolvedPeak, UnknownDeviceError, device_name, dtype_key, resolve_peak

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options of the benchmark suite (group ``harness-bench``); defaults depend on --device."""
    group = parser.getgroup("harness-bench", "harness stage-latency benchmarks")
    group.addoption("--bench-target", dest="bench_target", default="ocr2", help="target (default ocr2)")
    group.addoption("--bench-mode", dest="bench_mode", default=None,
                    help="mode (default: small on CPU, base on CUDA)")
    group.addoption("--bench-page", dest="bench_page", default="letter", help="built-in page id or image path")
    group.addoption("--bench-size", dest="bench_size", choices=("small", "full"), default=None,
                    help="model configuration (default: small on CPU, full on CUDA)")
    group.addoption("--bench-dtype", dest="bench_dtype", choices=tuple(DTYPES), default=None,
                    help="dtype (default: fp32 on CPU, bf16 on CUDA)")
    group.addoption("--bench-decode-contexts", dest="bench_decode_contexts", default=None,
                    help="comma-separated cached-token counts for decode (default: 64,256 on CPU; "
                         "512,1024,2048,4096 on CUDA)")
    group.addoption("--bench-rounds", dest="bench_rounds", type=int, default=None,
                    help="timed rounds per stage (default: 3 on CPU, 20 on CUDA)")
    group.addoption("--bench-warmup", dest="bench_warmup", type=int, default=None,
                    help="untimed warm-up rounds per stage (default: 1 on CPU, 5 on CUDA)")


@dataclass
class BenchSettings:
    """What the benchmark session runs, with the per-device defaults applied."""

    device: str
    target: str
    mode: str
    page: str
    small: bool
    dtype: torch.dtype
    decode_contexts: tuple[int, ...]
    rounds: int
    warmup: int
    peak: ResolvedPeak | None = None
    peak_note: str = ""

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def group(self) -> str:
        dtype = {v: k for k, v in DTYPES.items()}[self.dtype]
        return f"{self.target} {self.mode} ({'small' if self.small else 'full'} model, {dtype}, {self.device})"

    def as_dict(self) -> dict[str, Any]:
        return {"device": self.device, "target": self.target, "mode": self.mode, "page": self.page,
                "size": "small" if self.small else "full", "dtype": str(self.dtype).replace("torch.", ""),
                "decode_contexts": list(self.decode_contexts), "rounds": self.rounds, "warmup": self.warmup,
                "peak": None if self.peak is None else {"tflops": self.peak.tflops,
                                                        "bandwidth_gbps": self.peak.bandwidth_gbps,
                                                        "source": self.peak.source},
                "peak_note": self.peak_note}


def _device(config: pytest.Config) -> str:
    try:
        from harness.pytest.plugin import process_device

        device = process_device(config)
    except (ImportError, KeyError):  # plugin without a device stash
        device = config.getoption("harness_device", None) or "cpu"
    if device == "meta":
        raise pytest.UsageError("benchmarks time real execution: --device meta has no time; use cpu or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        # one line and exit 2, as every harness entry point does (not an INTERNALERROR traceback)
        pytest.exit(f"--device {device}: CUDA is unavailable in this torch ({torch.__version__}); "
                    "install a CUDA build of torch (make setup TORCH_INDEX_URL=...) or use --device cpu",
                    returncode=2)
    return "cuda:0" if device == "cuda" else device


def _contexts(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise pytest.UsageError(f"--bench-decode-contexts {text!r}: expected positive integers, e.g. 512,4096")
    return values


def bench_settings(config: pytest.Config) -> BenchSettings:
    """Settings from the options, the device defaults and the peak (resolved once, cached)."""
    cached = getattr(config, "_harness_bench_settings", None)
    if cached is not None:
        return cached
    device = _device(config)
    cuda = device.startswith("cuda")
    size = config.getoption("bench_size") or ("full" if cuda else "small")
    dtype = DTYPES[config.getoption("bench_dtype") or ("bf16" if cuda else "fp32")]
    contexts = _contexts(config.getoption("bench_decode_contexts") or ("512,1024,2048,4096" if cuda else "64,256"))
    rounds = config.getoption("bench_rounds") or (20 if cuda else 3)
    warmup = config.getoption("bench_warmup")
    warmup = (5 if cuda else 1) if warmup is None else warmup
    if rounds < 1 or warmup < 0:
        raise pytest.UsageError("--bench-rounds must be >= 1 and --bench-warmup >= 0")
    settings = BenchSettings(device, config.getoption("bench_target"), config.getoption("bench_mode") or
                             ("base" if cuda else "small"), config.getoption("bench_page"), size == "small", dtype,
                             contexts, rounds, warmup)
    overrides = {"peak_tflops": config.getoption("harness_peak_tflops", None),
                 "bandwidth_gbps": config.getoption("harness_peak_bandwidth", None)}
    try:
        settings.peak = resolve_peak(device_name(device), dtype_key(dtype), **overrides)
    except UnknownDeviceError as exc:
        if cuda:  # a GPU must be in the table or overridden: never a silent default
            raise pytest.UsageError(str(exc)) from None
        settings.peak_note = "no MFU on CPU (no peak-table entry; set the overrides to get one)"
    config._harness_bench_settings = settings  # type: ignore[attr-defined]
    return settings


def pytest_configure(config: pytest.Config) -> None:
    """Resolve the settings (and the GPU's peak) up front: an unknown GPU is a usage error."""
    if config.pluginmanager.hasplugin("benchmark") and not hasattr(config, "workerinput"):
        bench_settings(config)


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Record the GPU (or CPU), versions and the bench settings in the saved machine_info.

    https://pytest-benchmark.readthedocs.io/en/latest/hooks.html
    """
    from harness.gpu.profile import environment_info

    settings = bench_settings(config)
    machine_info["harness"] = {**environment_info(settings.device), **settings.as_dict()}
    if settings.cuda:
        machine_info["gpu"] = device_name(settings.device)


def stage_labels(settings: BenchSettings) -> list[str]:
    """One benchmark per stage; decode once per context length."""
    from harness.targets import get_target

    labels = []
    for stage in get_target(settings.target).stages:
        if stage == "decode":
            labels.extend(decode_label(c) for c in settings.decode_contexts)
        else:
            labels.append(stage)
    return labels


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``bench_stage`` with the target's stages (decode per context)."""
    if "bench_stage" in metafunc.fixturenames:
        metafunc.parametrize("bench_stage", stage_labels(bench_settings(metafunc.config)))


@dataclass
class BenchRun:
    """The built model and inputs of the session, and each stage's calls and analytic cost."""

    settings: BenchSettings
    target: Any
    built: Any
    inputs: Any
    costs: dict[int | None, dict[str, Any]] = field(default_factory=dict)

    def cost(self, stage: str, context: int | None) -> Any:
        from harness.analytic import stage_costs
        from harness.gpu.profile import analytic_config

        if context not in self.costs:
            itemsize = torch.empty((), dtype=self.settings.dtype).element_size()
            self.costs[context] = stage_costs(
                self.target.name, self.inputs.layout, text_tokens=self.inputs.prompt_tokens, decode_context=context,
                config=analytic_config(self.built), dtype_bytes=itemsize,
                attn_implementation=self.built.attn_implementation)
        return self.costs[context][stage]

    def stage(self, label: str) -> tuple[list, Any]:
        """The calls and analytic cost of a row label (``sam``, ``decode@512``...)."""
        stage, _, context = label.partition("@")
        ctx = int(context) if context else None
        calls = self.target.stage_calls(self.built, self.inputs, stage, decode_context=ctx) if ctx else \
            self.target.stage_calls(self.built, self.inputs, stage)
        return calls, self.cost(stage, ctx)

    def sync(self) -> None:
        if self.settings.cuda:
            torch.cuda.synchronize(self.settings.device)


@pytest.fixture(scope="session")
def bench_run(pytestconfig: pytest.Config) -> BenchRun:
    """Build the target once per session (random weights with their own storage) and prepare the page."""
    from harness.gpu.profile import find_page, unshare_expanded_parameters
    from harness.targets import get_target

    settings = bench_settings(pytestconfig)
    target = get_target(settings.target)
    built = target.build(settings.device, settings.dtype, small=settings.small)
    unshare_expanded_parameters(built.model)
    inputs = target.prepare(find_page(settings.page), settings.mode, device=settings.device, dtype=settings.dtype)
    return BenchRun(settings, target, built, inputs)


@pytest.fixture
def time_stage_benchmark(benchmark, bench_run: BenchRun):
    """Benchmark one row label with pytest-benchmark and attach the analytic figures."""

    def run(label: str) -> None:
        settings = bench_run.settings
        calls, cost = bench_run.stage(label)
        execute = run_calls(calls)
        reset = kv_cache_reset(calls)

        def setup() -> None:  # untimed, before every round: undo cache growth, drain the GPU queue
            if reset is not None:
                reset()
            bench_run.sync()

        def timed() -> None:
            execute()
            bench_run.sync()  # pytest-benchmark's clock is the host's: wait for the kernels

        benchmark.group = settings.group
        benchmark.extra_info.update({"stage": label, "matmul_flops": int(cost.matmul_flops),
                                     "bytes": int(cost.total_bytes), "device": settings.device})
        benchmark.pedantic(timed, setup=setup, rounds=settings.rounds, warmup_rounds=settings.warmup,
                           iterations=1)
        if benchmark.stats is None or not benchmark.stats:  # --benchmark-disable
            return
        from harness.gpu.roofline import stage_perf
        from harness.gpu.timing import timing_from_samples

        median = benchmark.stats["median"]
        benchmark.extra_info["achieved_tflops"] = cost.matmul_flops / median / 1e12 if median > 0 else None
        if settings.peak is not None and median > 0:
            perf = stage_perf(label, cost, timing_from_samples([median], device=settings.device), settings.peak)
            benchmark.extra_info.update({"mfu": perf.mfu, "roofline_s": perf.roofline.predicted_s,
                                         "bound": perf.roofline.bound, "peak_source": settings.peak.source})

    return run
