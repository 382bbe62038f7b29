"""REST capabilities: call overhead against a bare httpx2 request, and loading and reloading 5,000 files.

    python -m bench.capabilities [--calls 3000] [--files 5000]

Overhead: the same GET to a local API process (tests/fixtures/rest_api.py), interleaved: a bare httpx2 request
(plus JSON decoding), the capability backend's call path (template, request, response, pretty JSON), and the
gateway's run (validation and output handling too). Load: 5,000 capability files (written a few seconds before, as
files in a real directory mostly were) read cold, reloaded with one changed, with all changed, and with one changed
right after all were rewritten (so every file is read and compared again); during each reload a task keeps
searching, and its latencies are kept. Last, hot reload: with the directory watched, how long from writing a changed
file until a search finds its new text. Prints a table and writes bench/results/capabilities.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
import yaml
from rich.console import Console
from rich.table import Table

from aperture.config import Config, parse_config
from aperture.execution import CallContext, CapabilityBackend, CapabilitySettings
from aperture.execution.capabilities import loader
from aperture.gateway import Gateway
from bench._processes import ROOT, free_port, http_process, percentile, write_results

console = Console()
# Read from the loader so that this bench also runs against checkouts from before the loader had a settling window.
SETTLE_SECONDS = getattr(loader, "SETTLE_NS", 2_000_000_000) / 1e9
API = str(ROOT / "tests" / "fixtures" / "rest_api.py")
WORDS = "weather invoice customer order shipment payment ticket repository forecast calendar report user".split()


def capability_doc(i: int, url: str) -> dict[str, Any]:
    a, b = WORDS[i % len(WORDS)], WORDS[(i // len(WORDS)) % len(WORDS)]
    return {
        "name": f"cap_{i:05d}",
        "description": f"Look up the {a} of a {b} by id (variant {i}).",
        "schema": {
            "input": {
                "type": "object",
                "properties": {"id": {"type": "string", "description": f"The {b} id."}, "limit": {"type": "integer"}},
                "required": ["id"],
            }
        },
        "providers": {"primary": {"service": "rest", "config": {"base_url": url, "path": f"/echo/{a}/{{id}}"}}},
        "metadata": {"tags": [a, b], "read_only": True},
    }


def write_files(directory: Path, count: int, url: str, variant: str = "") -> None:
    for i in range(count):
        doc = capability_doc(i, url)
        doc["description"] += variant
        (directory / f"cap_{i:05d}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


async def overhead(url: str, calls: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "echo.yaml").write_text(
            yaml.safe_dump(
                {
                    "name": "echo",
                    "description": "Echo.",
                    "schema": {"input": {"type": "object", "properties": {"id": {"type": "string"}}}},
                    "providers": {"primary": {"config": {"base_url": url, "path": "/echo/items/{id}"}}},
                }
            )
        )
        settings = CapabilitySettings(watch=False, allow_private_networks=True)
        config = parse_config(
            {"backends": [{"name": "api", "kind": "capabilities", "directory": tmp, "watch": False,
                           "allow_private_networks": True}], "search": {"strategy": "bm25"}}
        )  # fmt: skip
        backend = CapabilityBackend("api", [directory], settings)
        backend.load_now()
        ctx = CallContext()
        async with httpx2.AsyncClient() as bare, Gateway(config) as gateway:

            async def direct() -> None:
                response = await bare.get(f"{url}/echo/items/42")
                response.json()

            async def through_backend() -> None:
                await backend.call("echo", {"id": "42"}, ctx)

            async def through_gateway() -> None:
                result = await gateway.run("api:echo", {"id": "42"})
                assert not result.is_error, result.text

            rows: dict[str, Callable[[], Awaitable[None]]] = {
                "bare httpx2 GET + json()": direct,
                "capability backend call": through_backend,
                "gateway run (validate + normalise)": through_gateway,
            }
            samples: dict[str, list[float]] = {name: [] for name in rows}
            for fn in rows.values():  # warm up: connections, validators
                for _ in range(50):
                    await fn()
            for _ in range(calls):
                for name, fn in rows.items():
                    started = time.perf_counter()
                    await fn()
                    samples[name].append((time.perf_counter() - started) * 1000)
        await backend.aclose()
    base = percentile(samples["bare httpx2 GET + json()"], 0.5)
    return [
        {
            "path": name,
            "calls": calls,
            "p50_ms": round(percentile(values, 0.5), 3),
            "p99_ms": round(percentile(values, 0.99), 3),
            "added_p50_ms": round(percentile(values, 0.5) - base, 3),
        }
        for name, values in samples.items()
    ]


def gateway_config(directory: Path, *, watch: bool) -> Config:
    return parse_config(
        {"backends": [{"name": "api", "kind": "capabilities", "directory": str(directory), "watch": watch,
                       "allow_private_networks": True}], "search": {"strategy": "bm25"}}
    )  # fmt: skip


async def load_and_reload(url: str, count: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "caps"
        directory.mkdir()
        write_files(directory, count, url)
        # Files just written may change again within one timestamp tick, so the loader reads them at each load until
        # they are a few seconds old; a real directory's files mostly are.
        await anyio.sleep(SETTLE_SECONDS + 0.1)
        started = time.perf_counter()
        async with Gateway(gateway_config(directory, watch=False)) as gateway:
            rows.append({"step": f"start: load {count} files and index", "seconds": time.perf_counter() - started})
            backend = gateway.registry.get("api")
            assert isinstance(backend, CapabilityBackend) and len(backend.capabilities) == count
            assert backend.report is not None
            rows.append({"step": "  of which reading and compiling", "seconds": backend.report.seconds})

            async def timed_reload(label: str) -> None:
                latencies: list[float] = []
                done = anyio.Event()

                async def keep_searching() -> None:
                    while not done.is_set():
                        began = time.perf_counter()
                        gateway.search("weather forecast of a customer")
                        latencies.append((time.perf_counter() - began) * 1000)
                        await anyio.sleep(0)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(keep_searching)
                    began = time.perf_counter()
                    reports = await gateway.reload_capabilities()
                    seconds = time.perf_counter() - began
                    done.set()
                report = reports["api"]
                assert len(report.capabilities) == count
                rows.append(
                    {
                        "step": label,
                        "seconds": seconds,
                        "files_read": getattr(report, "read", None),
                        "files_parsed": getattr(report, "parsed", None),
                        "searches_meanwhile": len(latencies),
                        "search_p50_ms": percentile(latencies, 0.5) if latencies else None,
                        "search_max_ms": max(latencies) if latencies else None,
                    }
                )

            (directory / "cap_00007.yaml").write_text(
                yaml.safe_dump({**capability_doc(7, url), "description": "Changed."}, sort_keys=False)
            )
            await timed_reload(f"reload: 1 of {count} changed")
            write_files(directory, count, url, variant=" Revised.")
            await timed_reload(f"reload: all {count} changed")
            assert "Revised" in (gateway.index.get("api:cap_00001") or capability_doc(0, url)).description  # type: ignore[union-attr]
            (directory / "cap_00008.yaml").write_text(
                yaml.safe_dump({**capability_doc(8, url), "description": "Changed."}, sort_keys=False)
            )
            await timed_reload(f"reload: 1 of {count} changed, all < {SETTLE_SECONDS:g} s old")
        rows.append(await searchable_after_write(directory, url))
    return rows


async def searchable_after_write(directory: Path, url: str) -> dict[str, Any]:
    """Hot reload at full size: seconds from writing a changed file to a search that finds its new text."""
    async with Gateway(gateway_config(directory, watch=True)) as gateway:
        await anyio.sleep(0.5)  # the watcher starts after the first load
        changed = anyio.Event()

        def wake() -> None:
            changed.set()

        def found() -> bool:
            hits = gateway.search("zebracorn migration ledger")["tools"]
            return bool(hits) and hits[0]["id"] == "api:cap_00003"

        gateway.on_tools_changed(wake)
        doc = {**capability_doc(3, url), "description": "Reconcile the zebracorn migration ledger."}
        began = time.perf_counter()
        (directory / "cap_00003.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        with anyio.fail_after(10):
            while not found():
                await changed.wait()
                changed = anyio.Event()
        seconds = time.perf_counter() - began
    return {"step": "hot reload: changed file searchable after", "seconds": seconds}


async def run(calls: int, files: int) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with http_process([sys.executable, API, "--port", str(port)], port):
        return {"overhead": await overhead(url, calls), "load": await load_and_reload(url, files)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--files", type=int, default=5000)
    args = parser.parse_args()
    results = anyio.run(run, args.calls, args.files)
    table = Table(title=f"capability call overhead ({args.calls} interleaved calls each, local API process)")
    for column in ("path", "p50 ms", "p99 ms", "added at p50 ms"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for row in results["overhead"]:
        table.add_row(row["path"], f"{row['p50_ms']:.3f}", f"{row['p99_ms']:.3f}", f"{row['added_p50_ms']:+.3f}")
    console.print(table)
    load = Table(title=f"loading {args.files} capability files (goal: <= 2 s each, searches answering)")
    columns = ("step", "seconds", "files read / parsed", "searches meanwhile", "search p50 ms", "search max ms")
    for column in columns:
        load.add_column(column, justify="left" if column == "step" else "right")
    for row in results["load"]:
        load.add_row(
            row["step"],
            f"{row['seconds']:.3f}",
            f"{row['files_read']} / {row['files_parsed']}" if row.get("files_read") is not None else "",
            str(row.get("searches_meanwhile", "")),
            f"{row['search_p50_ms']:.2f}" if row.get("search_p50_ms") is not None else "",
            f"{row['search_max_ms']:.1f}" if row.get("search_max_ms") is not None else "",
        )
    console.print(load)
    console.print(f"wrote {write_results('capabilities', results)}")


if __name__ == "__main__":
    main()
