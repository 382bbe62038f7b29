"""Code mode: programs an agent writes, run in an isolated runtime that reaches the gateway's tools only over
a bridge. `Runtime` is the seam; each runtime is one module that registers itself (bwrap and wasm here)."""

from aperture.execution.code import bwrap as _bwrap  # registers the bwrap runtime
from aperture.execution.code import wasm as _wasm  # registers the wasm runtime
from aperture.execution.code.executor import CodeExecutor
from aperture.execution.code.protocol import Bridge, BridgeError
from aperture.execution.code.runtime import (
    BridgedCall,
    Limits,
    OnCall,
    Outcome,
    Runtime,
    register_runtime,
    runtime_named,
    runtime_names,
)
from aperture.execution.code.settings import CodeSettings

BwrapRuntime = _bwrap.BwrapRuntime
WasmRuntime = _wasm.WasmRuntime

__all__ = [
    "Bridge",
    "BridgeError",
    "BridgedCall",
    "BwrapRuntime",
    "CodeExecutor",
    "CodeSettings",
    "Limits",
    "OnCall",
    "Outcome",
    "Runtime",
    "WasmRuntime",
    "register_runtime",
    "runtime_named",
    "runtime_names",
]
