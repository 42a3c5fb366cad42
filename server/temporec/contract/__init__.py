"""The plugin contract: the interfaces that plugins implement and the types they exchange
with the core. Everything here is importable from ``temporec`` itself
(``from temporec import Head, Domain, Encoder, Query, hookimpl``).

    hookspecs   the hooks a plugin implements (register_heads, _domains, _encoders, _stores)
    registry    discovery through entry points, per-plugin error isolation
    heads       Head: event vectors -> next-item states; padding helpers
    domains     Domain: a field's actions, data, rules, training and evaluation
    encoders    Encoder: texts -> L2-normalized vectors
    stores      Store: users' tracked events, kept between requests
    types       Event, Catalog, Dataset, Query, Recommendation, ...
    options     typed request options of the domains
    training    TrainConfig, TrainRequest, EvalRequest, Report
    errors      the exceptions the transport maps to status codes

Names load on first use, so that light modules (the generated API stubs) need no torch.
"""

import importlib

_MODULES = {
    "registry": ["ENTRY_POINT_GROUP", "KINDS", "PluginInfo", "Registry", "load_registry"],
    "heads": ["Head", "HeadOutput", "padding_lengths", "to_back", "to_front"],
    "domains": ["DATA_TRAITS", "Domain", "Exclusions", "Forbidden", "check_compatible", "hands_off"],
    "encoders": ["Encoder"],
    "stores": ["Exposure", "MonitoredText", "Store", "StoreSettings", "TrackedEvent"],
    "types": [
        "Catalog",
        "Contribution",
        "Dataset",
        "Event",
        "HandOff",
        "Limits",
        "Query",
        "Recommendation",
        "ScoredItem",
    ],
    "options": ["NoOptions", "option_defaults", "option_text", "options_from_mapping", "read_options"],
    "training": ["EvalRequest", "Report", "TrainConfig", "TrainRequest"],
    "errors": [
        "FailedPrecondition",
        "InvalidArgument",
        "NotFound",
        "PluginError",
        "ResourceExhausted",
        "TemporecError",
        "Unavailable",
        "allowed",
        "plugin_call",
    ],
}
NAMES = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(NAMES)


def __getattr__(name: str):
    if name in NAMES:
        return getattr(importlib.import_module(f"temporec.contract.{NAMES[name]}"), name)
    raise AttributeError(f"module 'temporec.contract' has no attribute {name!r}")
