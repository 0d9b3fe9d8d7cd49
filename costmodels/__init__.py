"""Technology cost model: prices the actions the TLM counted (DESIGN.md, "Cost model conventions").

- :mod:`costmodels.technology` — the constants, each with a published source (Horowitz ISSCC 2014
  at 45 nm, Aladdin's 40 nm register, the 16 nm SRAM bitcell, a 45 nm NoC link), scaled between
  nodes with Stillmaker & Baas (2017); technologies ``16nm`` (default), ``45nm``, ``7nm``.
- :mod:`costmodels.energy` — energy per action as functions of bit widths.
- :mod:`costmodels.area` — area per component; :func:`iso_depth_hardware` sizes the buffers.
- :mod:`costmodels.evaluate` — :func:`evaluate` (layer runs -> :class:`CostReport`),
  :func:`normalized` (vs the same hardware at 8/8/-/-), :func:`plot_breakdown`.

The paper reproduction (``python -m studies.paper``) lives above the library, in :mod:`studies.paper`.

Typical use::

    from costmodels import evaluate, normalized, iso_depth_hardware
    hw = iso_depth_hardware(load_hardware("magnet16"), cfg)
    runs = [Accelerator(hw, cfg).run_layer(task) for task in tasks]
    report = evaluate(runs, hw, cfg)            # report.fj_per_op, .area_mm2, .breakdown
"""
from .area import area_breakdown_um2, iso_depth_hardware
from .energy import COMPONENTS, PE_COMPONENTS, action_energy_pj
from .evaluate import CostReport, evaluate, normalized, plot_breakdown, price_actions
from .technology import TECHNOLOGIES, Constant, Technology, all_constants, technology

__all__ = [
    "Constant", "Technology", "all_constants", "technology", "TECHNOLOGIES",
    "COMPONENTS", "PE_COMPONENTS", "action_energy_pj",
    "area_breakdown_um2", "iso_depth_hardware",
    "CostReport", "evaluate", "normalized", "plot_breakdown", "price_actions",
]
