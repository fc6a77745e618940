"""The target interface: a model, the map from stage to module paths, and stage runners.

A :class:`Target` builds a model (:class:`BuiltModel`), turns a page into exactly the tensors the
vendor builds (:class:`StageInputs`, derived from the workload's :class:`ViewLayout`), and returns
each stage as :class:`StageCall` objects: one module call with real upstream inputs, ready for a
counter (``call()``; fvcore and thop get ``module``/``args``/``kwargs``).

Weights never change FLOPs: on ``meta`` there are none; on CPU/CUDA they are seeded random unless
a checkpoint is given. Every module path a stage names is checked on build: a path that matches
no module, or a stage without parameters, is an error, never a silent zero.
"""

from __future__ import annotations

import contextlib
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

from harness.inputs.workload import DEFAULT_PROMPT_TOKENS, ViewLayout

__all__ = [
    "StageCall",
    "BuiltModel",
    "StageInputs",
    "Target",
    "TargetError",
    "StageMapError",
    "validate_stage_map",
    "resolve_module",
    "empty_parameters",
    "materialize_parameters",
    "load_safetensors",
    "FILLER_TOKEN_BASE",
    "prompt_token_ids",
]

#: Text token ids stand-in: the tokenizer is not shipped, so the prompt's text positions hold
#: ``FILLER_TOKEN_BASE + i`` (ordinary vocabulary ids, never BOS/EOS/image). Token values never
#: change FLOPs (an embedding lookup); only the count does.
FILLER_TOKEN_BASE = 1000


class TargetError(RuntimeError):
    """A target cannot be built or run as asked; the message says why and what to do."""


class StageMapError(TargetError):
    """A stage map names a module path that does not exist, or a stage without parameters."""


@dataclass
class StageCall:
    """One module call of a stage, with real upstream inputs.

    ``module_path`` is the module's path in the built model (``""`` is the model itself).
    ``device`` is where the call runs (the vendor LM runs on CPU even in a meta build).
    ``note`` records a choice a reader must know about (e.g. which embeddings fill the prefill).
    """

    stage: str
    module_path: str
    module: nn.Module
    args: tuple
    kwargs: dict
    device: str = ""
    note: str = ""

    def __call__(self) -> Any:
        """The call's output (plain torch, in the calling thread)."""
        return self.module(*self.args, **self.kwargs)


@dataclass
class BuiltModel:
    """A built model and the implementation choices it was built with."""

    target: str
    model: nn.Module
    device: str
    dtype: torch.dtype
    attn_implementation: str
    experts_implementation: str | None
    config: Any
    stage_map: dict[str, tuple[str, ...]]
    small: bool = False
    #: ``"none (meta)"``, ``"random(seed=N)"`` (expert storage shared per layer when
    #: ``shared_experts``), or the checkpoint path.
    weights: str = "none (meta)"
    #: Where each stage runs (dsocr: the vendor LM always runs on CPU).
    stage_devices: dict[str, str] = field(default_factory=dict)
    #: Parameter count of the model's structure (shared storage counted once per parameter).
    parameter_count: int = 0
    notes: list[str] = field(default_factory=list)
    #: Target-private state (lazily materialised parts, ...).
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def stage_parameters(self, stage: str) -> int:
        """Parameters of the modules the stage map names for ``stage``."""
        return sum(_parameter_count(resolve_module(self.model, p)) for p in self.stage_map[stage])


@dataclass
class StageInputs:
    """Exactly the tensors the vendor builds for one page, derived from ``layout``.

    ``input_ids``, ``image_mask`` and ``attention_mask`` are real CPU tensors of shape (1, L) with
    ``L == prefill_length(layout, prompt_tokens)``; ``pixel_views`` follows ``layout.views``
    (same order, one tensor (batch, 3, size, size) per ViewBatch) and lives on ``device``
    (meta tensors on ``meta``). ``model_kwargs`` holds the target's extra forward inputs
    (dsocr: ``images_spatial_crop``; ocr2: ``num_local_patches``).
    """

    target: str
    mode: str
    layout: ViewLayout
    prompt_tokens: int
    device: str
    dtype: torch.dtype
    input_ids: torch.Tensor
    image_mask: torch.Tensor
    attention_mask: torch.Tensor
    pixel_views: tuple[torch.Tensor, ...]
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    #: ``"image"`` (decoded page), ``"blank"`` (a white page of the given size) or ``"meta"``.
    pixel_source: str = "meta"
    #: Upstream stage outputs per model (:func:`harness.run.callmemo.memoised_upstream`): computed
    #: once for these inputs, reused.
    cache: dict[tuple[int, str], Any] = field(default_factory=dict, repr=False)

    @property
    def seq_len(self) -> int:
        """Prefill length L (BOS + text + image placeholders)."""
        return int(self.input_ids.shape[1])

    @property
    def image_token_count(self) -> int:
        """Image placeholders in ``input_ids`` (must equal ``layout.image_tokens``)."""
        return int(self.image_mask.sum())

    def view(self, role: str) -> torch.Tensor | None:
        """The pixel batch of the ViewBatch with this role (``"crops"``/``"global"``), or None."""
        for batch, pixels in zip(self.layout.views, self.pixel_views):
            if batch.role == role:
                return pixels
        return None


class Target:
    """A model family: build it, map stages to modules, prepare inputs, run stages."""

    #: its name; its torch-free facts (stages, attention implementations, transformers releases,
    #: needs_model_path) are :data:`harness.inputs.targets.FACTS` [name], read by the class
    #: attributes below
    name: str = ""
    stages: tuple[str, ...] = ()
    #: ``(stage, counter, device) -> why`` that counter cannot measure that stage there ("*" matches
    #: any). Empty: fvcore traces SAM's convolutions on meta since the counter records them as a CPU
    #: trace does (harness.measure.fvcore_counter.ConvTracedAsOnCpu).
    NOT_MEASURABLE: Mapping[tuple[str, str, str], str] = {}
    #: Whether the target needs a model directory from the user (``--model-path``).
    needs_model_path: bool = False
    #: Where to run it when this Python's transformers cannot (the end of :meth:`environment_problem`).
    environment_hint: str = ""

    # Where it can run -----------------------------------------------------------------------
    @classmethod
    def not_measurable(cls, stage: str, counter: str, device: str) -> str | None:
        """Why ``counter`` cannot measure ``stage`` on ``device`` (None: it can)."""
        kind = str(device).split(":")[0]
        for key in ((stage, counter, kind), ("*", counter, kind), (stage, counter, "*"), ("*", counter, "*")):
            if key in cls.NOT_MEASURABLE:
                return cls.NOT_MEASURABLE[key]
        return None

    @classmethod
    def environment_problem(cls) -> str | None:
        """Why this Python cannot run the target at all (None: it can): a transformers release
        outside the target's (:meth:`harness.inputs.targets.TargetFacts.runs_on_transformers`)."""
        from harness.inputs.targets import FACTS

        facts = FACTS.get(cls.name)
        if facts is None:
            return None
        version = cls.installed_version("transformers")
        if facts.runs_on_transformers(version):
            return None
        return (f"target {cls.name} ({facts.title}) needs transformers{facts.transformers_needed}; this "
                f"Python has {version}. {cls.environment_hint}")

    @staticmethod
    def installed_version(dist: str) -> str:
        """The installed release of ``dist`` without importing it ("none" when it is absent)."""
        import importlib.metadata as md

        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "none"

    def input_problem(self) -> str | None:
        """Why the inputs the user gave (model directory, trust flag) cannot be used (None: fine)."""
        return None

    def build(self, device: str = "meta", dtype: torch.dtype = torch.float32, weights: Any = None, *,
              small: bool = False, **options: Any) -> BuiltModel:
        raise NotImplementedError

    def stage_map(self) -> dict[str, tuple[str, ...]]:
        raise NotImplementedError

    def prepare(self, page: Any, mode: str, prompt_tokens: int = DEFAULT_PROMPT_TOKENS, *,
                device: str = "meta", dtype: torch.dtype = torch.float32) -> StageInputs:
        raise NotImplementedError

    def stage_calls(self, built: BuiltModel, inputs: StageInputs, stage: str, *,
                    decode_context: int | None = None) -> list[StageCall]:
        raise NotImplementedError

    def whole_model_call(self, built: BuiltModel, inputs: StageInputs) -> StageCall:
        raise NotImplementedError

    # Shared checks -------------------------------------------------------------------------
    def _check_stage(self, stage: str) -> None:
        if stage not in self.stages:
            close = difflib.get_close_matches(stage, self.stages, n=2, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"Unknown stage {stage!r} for target {self.name!r}.{hint} "
                             f"Available: {', '.join(self.stages)}")

    def _check_built(self, built: BuiltModel, inputs: StageInputs | None = None) -> None:
        if built.target != self.name:
            raise ValueError(f"BuiltModel is a {built.target!r} model, not {self.name!r}")
        if inputs is not None and inputs.target != self.name:
            raise ValueError(f"StageInputs were prepared for {inputs.target!r}, not {self.name!r}")


# Stage maps ------------------------------------------------------------------------------------

def resolve_module(model: nn.Module, path: str) -> nn.Module:
    """The module at a dotted path (``""`` is the model); raises AttributeError if absent."""
    return model if path == "" else model.get_submodule(path)


def _parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _top_level(model: nn.Module) -> str:
    return ", ".join(f"{n} ({type(m).__name__})" for n, m in model.named_children())


def _path_problem(model: nn.Module, stage: str, path: str) -> str:
    parts = path.split(".")
    parent, parent_path = model, ""
    for i, part in enumerate(parts):
        child = parent._modules.get(part) if isinstance(parent, nn.Module) else None
        if child is None:
            break
        parent, parent_path = child, ".".join(parts[: i + 1])
    children = list(parent._modules)
    where = f"{parent_path!r}" if parent_path else "the model"
    missing = parts[len(parent_path.split(".")) if parent_path else 0]
    close = difflib.get_close_matches(missing, children, n=3, cutoff=0.5)
    hint = ""
    if close:
        full = [f"{parent_path}.{c}" if parent_path else c for c in close]
        hint = f" Did you mean {', '.join(repr(c) for c in full)}?"
    return (f"stage {stage!r}: module path {path!r} matches no module of {type(model).__name__} "
            f"({where} has no child {missing!r}; its children: {', '.join(children) or 'none'}).{hint} "
            f"Top-level modules: {_top_level(model)}")


def validate_stage_map(model: nn.Module, stage_map: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """Check every path resolves to a module and every stage has parameters; return the map.

    Raises :class:`StageMapError` naming the stage and the path, listing the model's top-level
    modules (and the children of the deepest prefix that exists, with close matches).
    """
    checked: dict[str, tuple[str, ...]] = {}
    for stage, paths in stage_map.items():
        if isinstance(paths, str):
            raise StageMapError(f"stage {stage!r}: expected a tuple of module paths, got the string {paths!r}")
        if not paths:
            raise StageMapError(f"stage {stage!r}: names no module path. Top-level modules: {_top_level(model)}")
        total = 0
        for path in paths:
            try:
                module = resolve_module(model, path)
            except AttributeError:
                raise StageMapError(_path_problem(model, stage, path)) from None
            total += _parameter_count(module)
        if total == 0:
            raise StageMapError(
                f"stage {stage!r}: modules {', '.join(repr(p) for p in paths)} have no parameters, so "
                f"the stage would count as nothing. Top-level modules: {_top_level(model)}")
        checked[stage] = tuple(paths)
    return checked


# Building without allocating, then materialising -------------------------------------------------

@contextlib.contextmanager
def empty_parameters() -> Iterator[None]:
    """Construct modules with parameters on ``meta`` but buffers real (CPU).

    Buffers such as rotary ``inv_freq`` or CLIP ``position_ids`` are computed in ``__init__``;
    keeping them real lets a part of the model be materialised later without re-deriving them.
    Parameters are moved to meta as they are registered, so initialisers run on meta (free).
    """
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None and param.device.type != "meta":
            stored = module._parameters[name]
            module._parameters[name] = type(stored)(stored.to("meta"), requires_grad=stored.requires_grad)

    nn.Module.register_parameter = register  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


_NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d)


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower()


def checkpoint_gaps(model: nn.Module, state: Mapping[str, Any] | None,
                    prefixes: tuple[str, ...] = ("",)) -> tuple[list[str], list[str]]:
    """After materialising: (parameters under ``prefixes`` still on meta, i.e. missing from the
    checkpoint; checkpoint tensors no parameter of the model uses, sorted). Callers decide which
    of the two is an error."""
    inside = lambda n: any(p == "" or n == p or n.startswith(p + ".") for p in prefixes)  # noqa: E731
    missing = [n for n, p in model.named_parameters() if p.device.type == "meta" and inside(n)]
    unused: list[str] = []
    if state is not None:
        names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
        unused = sorted(set(state) - names)
    return missing, unused


def materialize_parameters(
    model: nn.Module,
    device: str,
    dtype: torch.dtype,
    *,
    prefixes: Iterable[str] = ("",),
    seed: int = 0,
    share: Callable[[str, torch.Size], tuple[Any, tuple[int, ...], int] | None] | None = None,
    state: Mapping[str, torch.Tensor] | None = None,
) -> int:
    """Give every meta parameter under ``prefixes`` real storage on ``device``; return the count.

    Values: from ``state`` (a checkpoint) when given, else seeded random: normal(0, 0.02) for
    matrices and tables, ones for norm weights, zeros for biases. ``share(name, shape)`` may
    return ``(key, base_shape, dim)``: parameters with the same key then share one random tensor
    of ``base_shape`` (expanded along ``dim`` when the parameter stacks experts). This keeps a
    full-size MoE on CPU small (FLOPs and routing-independent counts do not depend on values).
    Buffers are moved to ``device`` as they are (see :func:`empty_parameters`).
    """
    generator = torch.Generator().manual_seed(seed)
    shared: dict[Any, torch.Tensor] = {}
    prefixes = tuple(prefixes)
    done = 0
    for module_name, module in model.named_modules():
        inside = any(module_name == p or module_name.startswith(p + ".") or p == "" for p in prefixes)
        if not inside:
            continue
        for leaf, param in list(module._parameters.items()):
            if param is None:
                continue
            name = f"{module_name}.{leaf}" if module_name else leaf
            if param.device.type != "meta" and str(param.device) == device:
                continue
            if state is not None:
                if name not in state:
                    continue  # reported by the caller (missing keys)
                data = state[name].to(device=device, dtype=dtype)
                if data.shape != param.shape:
                    raise TargetError(f"checkpoint tensor {name!r} has shape {tuple(data.shape)}, "
                                      f"the model expects {tuple(param.shape)}")
            else:
                spec = share(name, param.shape) if share is not None else None
                if spec is not None:
                    key, base_shape, dim = spec
                    if key not in shared:
                        shared[key] = _random(base_shape, generator, 0.02).to(device=device, dtype=dtype)
                    base = shared[key]
                    data = base.expand(param.shape) if dim >= 0 else base
                elif param.dim() == 1 and leaf == "bias":
                    data = torch.zeros(param.shape, dtype=dtype, device=device)
                elif param.dim() == 1 and _is_norm(module):
                    data = torch.ones(param.shape, dtype=dtype, device=device)
                else:
                    data = _random(param.shape, generator, 0.02).to(device=device, dtype=dtype)
            module._parameters[leaf] = nn.Parameter(data, requires_grad=False)
            done += 1
        for leaf, buf in list(module._buffers.items()):
            if buf is not None and buf.device.type != "meta":
                module._buffers[leaf] = buf.to(device)
    return done


def _random(shape: Sequence[int], generator: torch.Generator, std: float) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=generator) * std


def load_safetensors(path: str | Path, prefixes: Iterable[str] = ("",)) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of every ``*.safetensors`` in a directory, whose
    names start with one of ``prefixes`` (each read only when wanted)."""
    from safetensors import safe_open

    p = Path(path)
    files = sorted(p.glob("*.safetensors")) if p.is_dir() else [p]
    if not files or not all(f.is_file() for f in files):
        raise TargetError(f"weights {str(path)!r}: no .safetensors file found")
    wanted = tuple(prefixes)
    state: dict[str, torch.Tensor] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as handle:
            for key in handle.keys():
                if any(pre == "" or key == pre or key.startswith(pre + ".") for pre in wanted):
                    state[key] = handle.get_tensor(key)
    return state


# Prompt -----------------------------------------------------------------------------------------

def prompt_token_ids(count: int) -> list[int]:
    """``count`` stand-in text token ids (see :data:`FILLER_TOKEN_BASE`)."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError(f"prompt_tokens: expected a non-negative int, got {count!r}")
    return [FILLER_TOKEN_BASE + (i % 1000) for i in range(count)]
