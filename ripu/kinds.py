"""Trial kinds: each described once, as a composition of parts; the only module that
compares kind names.

A trial kind (``train.kind``) says which loss terms a trial optimises (docs/method.md sections
2 and 3), which batches it draws, its *schedule* (plain iterations, selection rounds, LSE
rounds) and its *target-label source* (none, every pixel, the selected pixels from the
oracle or people, those plus pseudo-labels, LSE's pseudo-labels), both by the name of an
entry of :mod:`ripu.parts`' registries, and how the report shows it. Code asks a kind's
attributes; it never compares its name. Torch-free, so configs, reports and sweeps import
it cheaply.

Adding a kind: add one ``TrialKind`` to ``KINDS`` below (its loss terms must be among
``LOSS_TERMS``, its schedule and label source registered in :mod:`ripu.parts`); the
trainer, the sweep and the report pick it up from its attributes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ripu.registry import Registry

# Loss terms a kind may use; ``ripu.engine.objective`` computes them, the ``loss`` section
# weights them.
LOSS_TERMS = ("src", "lc", "tgt", "nl", "tgt_focal", "pseudo", "pseudo_focal")


@dataclass(frozen=True)
class TrialKind:
    """One trial kind.

    ``terms``: its loss terms (a subset of ``LOSS_TERMS``). ``uses_source`` /
    ``uses_target``: whether its batches hold source / target images. ``target_labels``:
    ``none`` (no target supervision), ``all`` (every target pixel, the upper bound),
    ``selected`` (the pixels selection rounds labelled), ``selected+pseudo`` (those plus LSE
    pseudo-labels elsewhere), ``pseudo`` (LSE pseudo-labels only). ``schedule``: plain
    iterations, selection rounds at ``active.round_at``, or LSE rounds. ``reference``: drawn
    as a horizontal line in the budget curve (it has no budget axis). ``order``: position in
    tables and legends.
    """

    name: str
    display: str
    order: int
    terms: tuple[str, ...]
    uses_source: bool
    uses_target: bool
    target_labels: str
    schedule: str
    reference: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.terms) - set(LOSS_TERMS)
        if unknown:
            raise ValueError(f"trial kind {self.name!r}: unknown loss terms {sorted(unknown)}")

    @property
    def selects(self) -> bool:
        """Whether the kind runs selection rounds (and so has a strategy and a budget)."""
        return self.schedule == "selection_rounds"

    @property
    def labels_selected(self) -> bool:
        """Whether its target labels are the pixels selection rounds labelled."""
        return self.target_labels in ("selected", "selected+pseudo")

    @property
    def labels_everything(self) -> bool:
        """Whether every target pixel is labelled (the upper bound)."""
        return self.target_labels == "all"

    @property
    def labelled_fraction_fixed(self) -> float | None:
        """Share of labelled target pixels when it does not depend on selection."""
        return {"none": 0.0, "pseudo": 0.0, "all": 1.0}.get(self.target_labels)


KINDS: Registry[TrialKind] = Registry("trial kind", {k.name: k for k in (
    TrialKind("source_only", "source only", 0, ("src",), True, False, "none", "iterations",
              reference=True, description="CE on source; the lower bound"),
    TrialKind("lse", "LSE", 1, ("src", "tgt", "tgt_focal"), True, True, "pseudo",
              "lse_rounds", reference=True,
              description="LSE self-training on scale-invariant examples (docs/method.md section 3)"),
    TrialKind("active", "RIPU", 2, ("src", "lc", "tgt", "nl"), True, True, "selected",
              "selection_rounds",
              description="CE_src + CE_tgt(selected) + lc L_LC + nl L_NL, selection rounds"),
    TrialKind("source_free", "source-free", 3, ("tgt", "nl"), False, True, "selected",
              "selection_rounds",
              description="no source data: CE_tgt(selected) + nl L_NL, selection rounds"),
    TrialKind("hybrid", "+ LSE", 4, ("src", "lc", "tgt", "nl", "pseudo", "pseudo_focal"),
              True, True, "selected+pseudo", "selection_rounds",
              description="active plus LSE pseudo-labels on the pixels not selected"),
    TrialKind("supervised", "supervised", 5, ("src", "lc", "tgt", "nl"), True, True, "all",
              "iterations", reference=True,
              description="every target pixel labelled; the upper bound"),
)})


def get_kind(name: str) -> TrialKind:
    """The registered kind ``name``; ConfigError listing the valid names otherwise."""
    return KINDS[name]


def kind_names() -> tuple[str, ...]:
    """Registered kind names in display order."""
    return tuple(sorted(KINDS, key=lambda n: KINDS[n].order))
