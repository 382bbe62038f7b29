"""The gateway layer: the `Gateway` that decides what every surface offers, the meta-tools it offers (each
described once, with its arguments and handler, for every surface to serve), and their answers in the shape every
surface sends (`Reply`)."""

from aperture.gateway.core import Gateway
from aperture.gateway.metatools import META_TOOLS, META_TOOLS_BY_NAME, MetaTool, offered_meta_tool, offered_meta_tools
from aperture.gateway.replies import Reply, call_meta_tool, error_data, internal_failure, run_data

__all__ = [
    "META_TOOLS",
    "META_TOOLS_BY_NAME",
    "Gateway",
    "MetaTool",
    "Reply",
    "call_meta_tool",
    "error_data",
    "internal_failure",
    "offered_meta_tool",
    "offered_meta_tools",
    "run_data",
]
