"""The gateway's search: strategy from the configuration, confidence, intent, down backends, the MCP meta-tool."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client
from rich.console import Console

import aperture.config.schema
from aperture import cli
from aperture.config import Config, SearchConfig, parse_config
from aperture.discovery import BM25Strategy, DenseStrategy, EmbeddingCache, HybridStrategy, MiniLMEmbedder, ToolIndex
from aperture.execution import McpBackend, StdioTarget, UpstreamState
from aperture.gateway import META_TOOLS_BY_NAME, Gateway
from aperture.model import ConfigError, InvalidCursorError, InvalidRequestError, Tool, ToolId
from aperture.surface.mcp import McpSurface
from tests.conftest import TEST_CONFIG
from tests.discovery.held import Held
from tests.mcp_helpers import error_of

pytestmark = pytest.mark.anyio


def with_search(config: Config, **search: object) -> Config:
    return config.model_copy(update={"search": SearchConfig.model_validate(search)})


async def test_every_search_answers_a_confidence(gateway: Gateway) -> None:
    fits = gateway.search("convert kilometres to miles")
    # Its verb and both units (km and mi in the parameters): a near-exact request.
    assert fits["tools"][0]["id"] == "toolbox:convert_units" and fits["confidence"] == "strong"
    unrelated = gateway.search("book a table for two at an italian restaurant tonight")
    assert unrelated["confidence"] == "none"
    assert "tell the user no available tool can do this" in unrelated["reason"]
    named = gateway.search("toolbox:hash_text")
    assert named["tools"][0]["id"] == "toolbox:hash_text" and named["confidence"] == "strong"
    # A request made of the tool's own words that names it: strong, though its description is long.
    near = gateway.search("calculate 2+2")
    assert near["tools"][0]["id"] == "toolbox:calculate" and near["confidence"] == "strong"
    assert gateway.search("evaluate 2+2")["confidence"] != "none"  # said none before the calibration on all sets


async def test_intent_is_checked_and_used(gateway: Gateway) -> None:
    result = gateway.search("convert", intent="I need to turn kilometres into miles for a running log")
    assert result["tools"][0]["id"] == "toolbox:convert_units"
    with pytest.raises(InvalidRequestError, match=r"intent is 1001 characters long; .*at most 1000"):
        gateway.search("convert", intent="x" * 1001)


async def test_the_default_strategy_is_hybrid_built_behind_bm25(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    assert config.search.strategy == "auto"
    with caplog.at_level("INFO", logger="aperture"):
        async with Gateway(config) as gateway:
            assert isinstance(gateway.index.strategy, HybridStrategy)
            assert gateway.index.fallback is not None and gateway.index.fallback.name == "bm25"
            await anyio.to_thread.run_sync(gateway.index.wait_ready, 60)
            assert gateway.index.serving == "hybrid"
    assert "search strategy: hybrid (auto: the semantic extra is installed)" in caplog.text
    # The embedding cache sits beside the configuration file.
    assert config.embedding_cache() == TEST_CONFIG.parent / ".aperture" / "embeddings"
    assert list(config.embedding_cache().glob("*.npz"))


async def test_bm25_and_lexical_are_built_at_once(config: Config) -> None:
    for name in ("bm25", "lexical"):
        async with Gateway(with_search(config, strategy=name)) as gateway:
            assert gateway.index.ready and gateway.index.serving == name
            assert gateway.search("sha256 hash")["tools"][0]["id"] == "toolbox:hash_text"


def test_search_configuration_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"search.strategy: Input should be 'auto', 'hybrid', 'semantic', 'bm25'"):
        parse_config({"search": {"strategy": "magic"}})
    with pytest.raises(ConfigError, match=r"search.unavailable: Input should be 'mark' or 'hide'"):
        parse_config({"search": {"unavailable": "drop"}})
    config = parse_config({"search": {"cache_dir": "vectors"}}, base_dir=tmp_path)
    assert config.embedding_cache() == tmp_path / "vectors"
    monkeypatch.setattr(aperture.config.schema, "semantic_available", lambda: False)
    with pytest.raises(ConfigError, match=r"the 'hybrid' strategy needs the 'semantic' extra.*pip install"):
        parse_config({"search": {"strategy": "hybrid"}})
    assert parse_config({"search": {"strategy": "auto"}}).search.strategy == "auto"


async def test_tools_of_a_down_backend_are_marked_or_hidden(config: Config) -> None:
    known = [Tool(id=ToolId("fax", "send_fax"), description="Send a fax to a phone number.")]
    for mode in ("mark", "hide"):
        async with Gateway(with_search(config, strategy="bm25", unavailable=mode)) as gateway:
            backend = McpBackend(
                "fax", StdioTarget(command="/nonexistent/fax-server"), lazy=True, known_tools=known, init_timeout=5
            )
            async with anyio.create_task_group() as tg:
                await backend.start(tg)
                await gateway.registry.register(backend)
                assert gateway.search("send a fax")["tools"][0].get("available", True)  # idle is not down
                failed = await gateway.run("fax:send_fax", {})
                assert failed.is_error
                with anyio.fail_after(10):
                    while backend.state is not UpstreamState.DOWN:
                        await anyio.sleep(0.02)
                found = gateway.search("send a fax")
                ids = [hit["id"] for hit in found["tools"]]
                if mode == "mark":
                    top = found["tools"][0]
                    assert top["id"] == "fax:send_fax" and top["available"] is False
                    assert "backend 'fax' is down" in top["unavailable_reason"]
                else:
                    assert "fax:send_fax" not in ids
                    empty = gateway.search("send a fax", namespace="fax")
                    assert empty["tools"] == [] and "backend that is down (fax)" in empty["reason"]
                await backend.aclose()
                tg.cancel_scope.cancel()


async def test_search_tools_over_mcp_takes_an_intent_and_reports_confidence(client: Client) -> None:
    result = await client.call_tool(
        "search_tools", {"query": "hash", "intent": "I want a sha256 digest of a string", "limit": 3}
    )
    data = result.structured_content
    assert data["tools"][0]["id"] == "toolbox:hash_text" and data["confidence"] in ("strong", "weak")
    assert json.loads(result.content[0].text)["confidence"] == data["confidence"]  # type: ignore[union-attr]
    too_long = error_of(await client.call_tool("search_tools", {"query": "hash", "intent": "x" * 1001}))
    assert "intent" in too_long["message"] and "1000" in too_long["message"]
    wrong_type = error_of(await client.call_tool("search_tools", {"query": "hash", "intent": {"goal": "hash"}}))
    assert "argument 'intent'" in wrong_type["message"]
    none = (await client.call_tool("search_tools", {"query": "order a pizza with extra cheese"})).structured_content
    assert none["confidence"] == "none" and "Stop searching" in none["reason"]


def test_the_search_tools_description_explains_confidence() -> None:
    tool = META_TOOLS_BY_NAME["search_tools"]
    assert "none (nothing fits: stop searching, tell the user)" in tool.description
    assert tool.input_schema["properties"]["intent"]["type"] == "string"
    assert "at most 1000 characters" in tool.input_schema["properties"]["intent"]["description"]


LONG = "convert units " * 100_000


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"query": LONG}, "The query is 1400000 characters long"),
        ({"query": "convert", "intent": LONG}, "intent is 1400000 characters long"),
        ({"query": "convert", "namespace": LONG}, "namespace is 1400000 characters long"),
        ({"query": "convert", "tags": ["x"] * 1000}, "tags lists 1000 tags"),
        ({"query": "convert", "tags": [LONG]}, "A tag is over 128 characters long"),
    ],
    ids=["query", "intent", "namespace", "tag-count", "tag-length"],
)
async def test_oversized_search_text_is_refused_before_it_is_scored(
    gateway: Gateway, client: Client, arguments: dict[str, object], says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    scored: list[str] = []
    monkeypatch.setattr(gateway.index, "search", lambda query, **_: scored.append(query))
    with pytest.raises(InvalidRequestError) as caught:
        gateway.search(**arguments)  # type: ignore[arg-type]
    assert says in caught.value.message
    error = error_of(await client.call_tool("search_tools", arguments))
    assert error["code"] == "invalid_request" and says in error["message"]
    assert len(error["message"]) < 400
    assert scored == []


async def test_a_cursor_no_server_issued_is_refused_without_decoding_it(gateway: Gateway) -> None:
    for cursor in ("x" * 100_000, base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000).decode()):
        with pytest.raises(InvalidCursorError):
            gateway.search("convert", cursor=cursor)


async def test_the_first_search_waits_a_bounded_time_then_says_the_semantic_index_is_warming(
    config: Config, tmp_path: Path
) -> None:
    release = threading.Event()
    gateway = Gateway(with_search(config, cache_dir=str(tmp_path / "vectors"), warm_wait=0.5))
    assert isinstance(gateway.index.strategy, HybridStrategy)
    held = Held(MiniLMEmbedder(), release)
    gateway.index.strategy.dense._embedder = held  # embeds half the catalog, then waits for `release`
    try:
        async with gateway, Client(McpSurface(gateway).server) as client:
            assert await anyio.to_thread.run_sync(held.halfway.wait, 60)
            started = time.monotonic()
            early = (
                await client.call_tool("search_tools", {"query": "convert kilometres to miles"})
            ).structured_content
            waited = time.monotonic() - started
            assert early is not None and 0.5 <= waited < 5  # waited warm_wait for the semantic index, no longer
            assert early["strategy"] == "bm25" and early["tools"][0]["id"] == "toolbox:convert_units"
            assert 0 < int(early["warming"].rstrip("%")) < 100
            release.set()
            assert await anyio.to_thread.run_sync(gateway.index.wait_ready, 60) and gateway.index.ready
            ready = (
                await client.call_tool("search_tools", {"query": "convert kilometres to miles"})
            ).structured_content
            assert ready is not None and "strategy" not in ready and "warming" not in ready
    finally:
        release.set()


async def test_a_search_during_a_short_warm_up_waits_for_the_semantic_index(config: Config, tmp_path: Path) -> None:
    release = threading.Event()
    gateway = Gateway(with_search(config, cache_dir=str(tmp_path / "vectors"), warm_wait=10))
    held = Held(MiniLMEmbedder(), release)
    gateway.index.strategy.dense._embedder = held  # type: ignore[attr-defined]
    try:
        async with gateway, Client(McpSurface(gateway).server) as client:
            assert await anyio.to_thread.run_sync(held.halfway.wait, 60)
            threading.Timer(0.3, release.set).start()  # ready well within warm_wait
            result = (await client.call_tool("search_tools", {"query": "sha256 hash"})).structured_content
            assert result is not None and "warming" not in result and "strategy" not in result
            assert gateway.index.ready
    finally:
        release.set()


def test_search_waits_for_first_embedding_with_a_progress_bar(tmp_path: Path) -> None:
    release = threading.Event()
    held = Held(MiniLMEmbedder(), release)
    index = ToolIndex(
        HybridStrategy(dense=DenseStrategy(held, cache=EmbeddingCache(tmp_path))), fallback=BM25Strategy()
    )
    index.update([Tool(id=ToolId("t", f"tool_{i}"), description=f"Tool {i} does task {i % 5}.") for i in range(40)])
    assert held.halfway.wait(60)
    assert index.warming == 0.5
    threading.Timer(1.0, release.set).start()
    shown = io.StringIO()
    cli._wait_for_index(index, Console(file=shown, force_terminal=True, width=100))
    assert index.ready and index.warming is None
    assert "embedding tools" in shown.getvalue() and "50%" in shown.getvalue()
