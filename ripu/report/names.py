"""How the report names and orders what it shows: methods, budgets, classes.

A *method* is a kind with its strategy: the plain selecting kind (trained on source plus its
selected labels) is named by its strategy alone (``ripu_region``), other selecting kinds by
``<kind>/<strategy>`` (``hybrid/ripu_region``), kinds that do not select by their name
(``lse``). Kind facts come from the registry (:mod:`ripu.kinds`), strategy facts from the
strategy registry (:mod:`ripu.acquisition.strategies`); no name is compared here.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from ripu.acquisition.strategies import STRATEGIES, get_strategy
from ripu.data.labels import CLASSES_19
from ripu.kinds import KINDS, TrialKind, get_kind

# Class names as the trials log them in metric keys (spaces -> "_"), docs/method.md section 4.
CLASS_ORDER = tuple(name.replace(" ", "_") for name in CLASSES_19)
# Readable strategy names for tables and legends (presentation data; the strategy registry
# holds no display names).
STRATEGY_DISPLAY = {
    "ripu_region": "RIPU-RA", "ripu_point": "RIPU-PA", "random_region": "random regions",
    "random_point": "random points", "entropy_region": "entropy regions (U)",
    "impurity_region": "impurity regions (P)", "full_image": "full images",
    "oracle": "oracle regions (uses the ground truth: an upper bound, not a method)",
}
# Shorter names for figure legends and axes, where the long ones crowd the plot.
STRATEGY_FIGURE = {**STRATEGY_DISPLAY, "oracle": "oracle regions (ground truth: upper bound)"}


def figure_text(text: str) -> str:
    """``text`` (a table's group name) with each long strategy name shortened as figures
    name it."""
    for name, long in STRATEGY_DISPLAY.items():
        text = text.replace(long, STRATEGY_FIGURE[name])
    return text


# Stable colours of the methods in every figure (presentation data, by :func:`method_id`): a
# method keeps its colour when others are added or left out. A method not listed gets one
# of ``SPARE_COLOURS`` from a stable hash of its id.
METHOD_COLOURS = {
    "ripu_region": "#d62728", "random_region": "#1f77b4", "ripu_point": "#ff7f0e",
    "random_point": "#17becf", "entropy_region": "#9467bd", "impurity_region": "#e377c2",
    "full_image": "#bcbd22", "hybrid/ripu_region": "#8c564b",
    "source_free/ripu_region": "#2ca02c", "source_only": "dimgray", "lse": "darkgoldenrod",
    "supervised": "black", "oracle": "#4b0082",
}
SPARE_COLOURS = ("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
                 "#f7b6d2", "#dbdb8d", "#9edae5", "#393b79", "#637939", "#843c39")


def method_colour(method: str) -> str:
    """The colour of a :func:`method_id` in every figure, whatever else is shown."""
    return METHOD_COLOURS.get(method) or SPARE_COLOURS[zlib.crc32(method.encode())
                                                       % len(SPARE_COLOURS)]


def metric_class(name: str) -> str:
    """A class name as metric keys spell it: ``traffic light`` -> ``traffic_light``."""
    return name.replace(" ", "_")


def order_classes(names: Iterable[str]) -> list[str]:
    """Metric-key class names in docs/method.md order, unknown ones after them, sorted."""
    names = set(names)
    known = [c for c in CLASS_ORDER if c in names]
    return known + sorted(names - set(known))


def is_point_strategy(strategy: str) -> bool:
    """Point strategies label single pixels: their budget is ``points`` per image."""
    return get_strategy(strategy).mode == "point"


def uses_ground_truth(method: str) -> bool:
    """A :func:`method_id` whose strategy reads the ground truth (an upper bound, not a
    method: figures draw it dashed)."""
    strategy = STRATEGIES.get(method.rpartition("/")[2])
    return strategy is not None and strategy.uses_ground_truth


def is_variant(kind: TrialKind) -> bool:
    """A selecting kind other than the plain one (source batches plus the selected labels
    alone), so its methods carry the kind's name: source-free, hybrid."""
    return not (kind.uses_source and kind.target_labels == "selected")


def method_id(kind_name: str, strategy: str) -> str:
    """``ripu_region`` (plain selecting kind), ``source_free/ripu_region``, ``lse``."""
    kind = get_kind(kind_name)
    if not kind.selects:
        return kind.name
    return f"{kind.name}/{strategy}" if is_variant(kind) else strategy


def display_name(method: str, figure: bool = False) -> str:
    """A readable name of a :func:`method_id` for tables (``figure``: for figures, shorter):
    ``RIPU-RA``, ``RIPU-RA source-free``, ``RIPU-RA + LSE``, ``LSE``."""
    strategies = STRATEGY_FIGURE if figure else STRATEGY_DISPLAY
    kind_name, _, strategy = method.rpartition("/")
    if not kind_name:
        return get_kind(method).display if method in KINDS else strategies.get(method, method)
    return f"{strategies.get(strategy, strategy)} {get_kind(kind_name).display}"


def method_name(method: str, network: str = "") -> str:
    """A figure's legend name: ``LSE``; ``LSE on vgg16_fcn8s`` when ``network`` is named (in
    an experiment that runs on several networks)."""
    name = display_name(method, figure=True)
    return f"{name} on {network}" if network else name


def group_name(method: str, label: str, network: str = "", figure: bool = False) -> str:
    """``RIPU-RA @ 2.2%``; ``LSE @ 0% on vgg16_fcn8s`` when ``network`` is named (``figure``:
    the shorter names of figures)."""
    name = f"{display_name(method, figure)} @ {label}"
    return f"{name} on {network}" if network else name


def budget_label(kind_name: str, strategy: str, budget: float, points: int) -> str:
    """``"2.2%"``, ``"40 px/image"``; ``"0%"`` without target labels, ``"100%"`` with all."""
    kind = get_kind(kind_name)
    if kind.selects:
        return f"{points} px/image" if is_point_strategy(strategy) else f"{100 * budget:g}%"
    return f"{100 * (kind.labelled_fraction_fixed or 0.0):g}%"
