"""How the image tower runs: eager PyTorch (fp16 autocast on CUDA), bf16 autocast on CPU, or the
tower exported to ONNX and run by onnxruntime on CPU (optionally with int8 weights).

Every backend takes the same uint8 ``(N, S, S, 3)`` batch (numpy or torch) and returns raw
(unnormalized) image features; :func:`searchlib.embedding.normalize` is applied by the caller. Backends other than
``torch`` must keep fidelity (mean cosine to eager fp32) at or above 0.99; the benchmark in
``benchmarks/bench_index.py`` measures it, and the results picked :data:`CPU_DEFAULT`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np

from .config import cache_dir  # noqa: F401  (where exports are kept)
from .errors import ConfigError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "bf16", "onnx", "onnx-int8")
#: The CPU backend ``auto`` picks; see benchmarks/RESULTS.md for the measurements behind it.
CPU_DEFAULT = "onnx"


def resolve_backend(backend: str, device: str) -> str:
    backend = (backend or "auto").lower()
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "torch" if device.startswith("cuda") else CPU_DEFAULT
    if backend != "torch" and device.startswith("cuda"):
        raise ConfigError(f"backend {backend} runs on the CPU; use --backend torch with --device cuda")
    return backend


class TorchImageTower:
    """Eager PyTorch; uint8 moves to the device (pinned, non-blocking on CUDA) and is scaled there."""

    def __init__(self, model, mean, std, device: str, bf16: bool = False):
        import torch

        self.model, self.device, self.bf16 = model, device, bf16
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)

    def _autocast(self):
        import torch

        if self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.float16)
        if self.bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def __call__(self, pixels) -> np.ndarray:
        import torch

        with torch.inference_mode(), self._autocast():
            if isinstance(pixels, torch.Tensor):  # e.g. decoded on the device already
                chunk = pixels.to(self.device, non_blocking=True)
            else:
                chunk = torch.from_numpy(np.ascontiguousarray(pixels))
                if self.device.startswith("cuda"):
                    chunk = chunk.pin_memory().to(self.device, non_blocking=True)
            x = chunk.permute(0, 3, 1, 2).float().div_(255.0)
            x = (x - self.mean) / self.std
            return self.model.encode_image(x).float().cpu().numpy()


@contextlib.contextmanager
def mha_fastpath_off():
    """PyTorch's fused attention kernel has no ONNX form; export through the plain ops."""
    import torch

    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


class OnnxImageTower:
    """The image tower exported to ONNX (uint8 in; scaling and mean/std inside the graph).

    The export is made once per model and kept in :func:`cache_dir`; ``int8`` quantizes the
    weights dynamically (faster where the CPU has VNNI, at some cost in fidelity).
    """

    def __init__(self, load_model, identity, int8: bool = False):
        import onnxruntime as ort

        path = self._export(load_model, identity, int8)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, os.cpu_count() or 1)
        options.log_severity_level = 3
        # Idle ORT threads must sleep, not spin: decode workers share these cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    @staticmethod
    def _export(load_model, identity, int8: bool) -> Path:
        """The cached export for ``identity`` (made now, from ``load_model()``, if missing)."""
        key = hashlib.sha256(json.dumps(identity.to_dict(), sort_keys=True).encode()).hexdigest()[:20]
        folder = cache_dir() / "onnx"
        folder.mkdir(parents=True, exist_ok=True)
        fp32 = folder / f"{identity.arch}-{key}-image.onnx"
        final = folder / f"{identity.arch}-{key}-image-int8.onnx" if int8 else fp32
        if final.is_file():
            return final
        import torch

        model = load_model()
        mean = torch.tensor(identity.mean).view(1, 3, 1, 1)
        std = torch.tensor(identity.std).view(1, 3, 1, 1)

        class Tower(torch.nn.Module):
            def __init__(self, clip):
                super().__init__()
                self.clip = clip
                self.register_buffer("mean", mean)
                self.register_buffer("std", std)

            def forward(self, pixels):
                x = pixels.permute(0, 3, 1, 2).float() / 255.0
                return self.clip.encode_image((x - self.mean) / self.std)

        if not fp32.is_file():
            size = identity.image_size
            dummy = torch.zeros((1, size, size, 3), dtype=torch.uint8)
            tmp = fp32.with_suffix(f".{os.getpid()}.tmp")
            log.info("exporting the image tower to %s (once)", fp32)
            with torch.no_grad(), mha_fastpath_off(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(Tower(model).float().cpu().eval(), (dummy,), str(tmp),
                                  input_names=["pixels"], output_names=["features"],
                                  dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
                                  opset_version=17, dynamo=False)
            os.replace(tmp, fp32)
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            tmp = final.with_suffix(f".{os.getpid()}.tmp")
            with contextlib.redirect_stdout(io.StringIO()):  # the quantizer prints the graph's inputs
                quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8)
            os.replace(tmp, final)
        return final

    def __call__(self, pixels) -> np.ndarray:
        if not isinstance(pixels, np.ndarray):  # a torch tensor (CPU) from the device decoder
            pixels = pixels.cpu().numpy()
        return self.session.run(None, {"pixels": np.ascontiguousarray(pixels, dtype=np.uint8)})[0]


def image_tower(backend: str, load_model, identity, device: str):
    """The callable that runs the image tower with ``backend`` (already resolved).

    ``load_model()`` returns the PyTorch model; it is called only when needed (the torch backends,
    or an ONNX export not yet in the cache).
    """
    if backend in ("onnx", "onnx-int8"):
        try:
            return OnnxImageTower(load_model, identity, int8=backend == "onnx-int8")
        except Exception as e:  # an export or runtime problem must not stop indexing
            log.warning("ONNX image tower unavailable (%s: %s); using PyTorch", type(e).__name__, e)
            return TorchImageTower(load_model(), identity.mean, identity.std, device)
    return TorchImageTower(load_model(), identity.mean, identity.std, device, bf16=backend == "bf16")
