"""The gateway layer: the `Gateway` that decides what every surface offers, and the meta-tools it offers
(each described once, with its arguments and handler, for every surface to serve)."""

from aperture.gateway.core import Gateway
from aperture.gateway.metatools import META_TOOLS, META_TOOLS_BY_NAME, MetaTool, offered_meta_tool, offered_meta_tools

__all__ = ["META_TOOLS", "META_TOOLS_BY_NAME", "Gateway", "MetaTool", "offered_meta_tool", "offered_meta_tools"]
