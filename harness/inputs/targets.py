"""Each target's facts that need no model code, stated once and read from here: its stages in
execution order, its attention implementations (the default first), the transformers releases it
runs on, how its prefill computes logits and whether it reads a user's model directory.

Its modes are :data:`harness.inputs.workload.MODES`; how it is built and run is its
:class:`harness.targets.base.Target`. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TargetFacts", "FACTS", "TARGETS", "TARGET_STAGES", "LM_STAGES", "VISION_STAGES", "MODEL_PATH_ENV", "DEFAULT_TARGET", "target_facts"]

#: The environment variable naming the vendor model directory when ``--model-path`` is not given.
MODEL_PATH_ENV = "DEEPSEEK_OCR_PATH"
#: The language model's stages, the last two of every target.
LM_STAGES: tuple[str, ...] = ("prefill", "decode")


@dataclass(frozen=True)
class TargetFacts:
    """One target's facts (see the module docstring)."""

    name: str
    #: what it is, for messages
    title: str
    #: stage names in execution order: the vision stages, then :data:`LM_STAGES`
    stages: tuple[str, ...]
    #: the attention implementations its build accepts; the first is the default
    attn_implementations: tuple[str, ...]
    #: transformers releases it runs on: ``low <= (major, minor) < high`` (high None: no bound)
    transformers_from: tuple[int, int]
    transformers_below: tuple[int, int] | None
    #: the one release its environment pins, when it has one (``make vendor-env``)
    transformers_pin: str | None = None
    #: its prefill computes ``lm_head`` on every row (the vendor's forward), not only the last one
    prefill_logits_all_rows: bool = False
    #: its forward casts the logits to fp32 (a copy of every logit row)
    fp32_logits: bool = False
    #: whether it needs a model directory from the user (``--model-path``, else :data:`MODEL_PATH_ENV`)
    needs_model_path: bool = False

    @property
    def vision_stages(self) -> tuple[str, ...]:
        """The stages before the language model."""
        return tuple(s for s in self.stages if s not in LM_STAGES)

    @property
    def default_attention(self) -> str:
        return self.attn_implementations[0]

    @property
    def transformers_needed(self) -> str:
        """``==4.46.3`` or ``>=5``: what to install, for messages."""
        if self.transformers_pin:
            return f"=={self.transformers_pin}"
        low = ".".join(map(str, self.transformers_from)).removesuffix(".0")
        return f">={low}"

    def runs_on_transformers(self, version: str) -> bool:
        """Whether this target runs on transformers ``version`` (e.g. ``"4.46.3"``, ``"5.23.0"``)."""
        parts = [int(p) for p in version.split(".")[:2] if p.isdigit()]
        if not parts:
            return False
        release = (parts + [0])[:2]
        return tuple(release) >= self.transformers_from and \
            (self.transformers_below is None or tuple(release) < self.transformers_below)


FACTS: dict[str, TargetFacts] = {
    "dsocr": TargetFacts(
        "dsocr", "the vendor DeepSeek-OCR remote code", ("sam", "clip", "projector") + LM_STAGES,
        attn_implementations=("eager", "flash_attention_2"),
        transformers_from=(4, 46), transformers_below=(5, 0), transformers_pin="4.46.3",
        prefill_logits_all_rows=True, fp32_logits=True, needs_model_path=True),
    "ocr2": TargetFacts(
        "ocr2", "transformers' native DeepSeek-OCR-2", ("sam", "encoder", "projector") + LM_STAGES,
        attn_implementations=("sdpa", "eager"), transformers_from=(5, 0), transformers_below=None),
}
#: Target names.
TARGETS: tuple[str, ...] = tuple(FACTS)
#: The target a command covers when none is named (it needs nothing from the user).
DEFAULT_TARGET = "ocr2"
#: Stage names per target, in execution order.
TARGET_STAGES: dict[str, tuple[str, ...]] = {name: facts.stages for name, facts in FACTS.items()}
#: Every target's vision stages (their outputs feed later stages of the same page).
VISION_STAGES: frozenset[str] = frozenset(s for facts in FACTS.values() for s in facts.vision_stages)


def target_facts(name: str) -> TargetFacts:
    """The facts of target ``name``; ``ValueError`` naming the known targets otherwise."""
    try:
        return FACTS[name]
    except KeyError:
        raise ValueError(f"unknown target {name!r}; expected one of {', '.join(TARGETS)}") from None
