"""The embedding model with its weights kept small in memory, made once from the packaged model.

The packaged MiniLM stores int8 weights behind `Cast` and `Mul` nodes. ONNX Runtime folds those into float32
weights when it loads the model, and packs them again for its matrix kernels: a session of about 155 MB for a
21 MB file. Here the weights are quantized the way ONNX Runtime keeps them packed (`MatMulNBits`: 8-bit
blocks of 32 for the matrices, computed with int8 activations quantized per row; `GatherBlockQuantized`:
4-bit blocks for the word embeddings): a session of about 36 MB, vectors within cosine 0.996 of the packaged
model's, and each text's vector independent of the batch it is embedded in (docs/search.md has the figures).

The conversion needs the `onnx` and `onnx-ir` packages and runs in a child process (`python -m
aperture.discovery._quantize SOURCE TARGET`), so that the float32 copy it goes through never adds to the
gateway's own memory. The result is kept under the embedding cache directory, named by the packaged file's
hash and ONNX Runtime's version; where it cannot be made, the packaged model is used as it is.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

_TIMEOUT = 600.0  # seconds: the conversion takes a few on an idle core


def quantized_model(source: Path, source_sha256: str, cache_dir: Path) -> Path | None:
    """The small model made from `source` (the packaged file with that hash), made now if not yet kept in
    `cache_dir`; None where it cannot be made (a warning says why)."""
    import onnxruntime

    target = cache_dir / "models" / f"minilm-l6-w8e4-{source_sha256[:12]}-ort{onnxruntime.__version__}.onnx"
    if target.is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [sys.executable, "-m", "aperture.discovery._quantize", str(source), str(target)],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("semantic search: the small embedding model could not be made (%s); using the packaged one", exc)
        return None
    if done.returncode != 0 or not target.is_file():
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        logger.warning("semantic search: the small embedding model could not be made (%s); using the packaged one", why)
        return None
    return target


def convert(source: Path, target: Path) -> None:
    """Write the small model made from `source` to `target` (atomically: a reader never sees half a file)."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".quantize-") as work:
        folded = Path(work) / "float32.onnx"
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC  # (portable)
        options.optimized_model_filepath = str(folded)
        onnxruntime.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        model = onnx.load(str(folded))
        # Matrices in 8 bits (Gather takes 4 bits only), then the word embeddings in 4.
        for bits, op in ((8, "MatMul"), (4, "Gather")):
            config = DefaultWeightOnlyQuantConfig(
                block_size=32,
                is_symmetric=True,
                bits=bits,
                accuracy_level=4,  # int8 activations, quantized per row: a text's vector ignores its batch
                op_types_to_quantize=(op,),
                quant_axes=((op, 0 if op == "MatMul" else 1),),
            )
            quantizer = MatMulNBitsQuantizer(model, algo_config=config)
            quantizer.process()
            model = quantizer.model.model
        small = Path(work) / "small.onnx"
        onnx.save(model, str(small))
        os.replace(small, target)


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)  # (the quantizer reports every node it skips)
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
