"""A small HTTP JSON server for a model (stdlib only): the server side of ``HTTPModel``.

    with ModelServer(rl.models.load("mnist-cnn"), access="label") as server:
        target = rl.models.HTTPModel(server.url, access="label")

POST <path> with ``{"inputs": [[...]]}`` (nested lists, (N, ...) in [0, 1]) or ``{"data":
<base64 float32 little-endian>, "shape": [N, ...]}``, and optionally ``"output": "scores" |
"labels"``. The answer is ``{"scores": [[...]], "n_classes": K}`` or ``{"labels": [...],
"n_classes": K}``. A server started with ``access="label"`` never reveals scores. Bad requests
get HTTP 400 with ``{"error": "..."}``. GET <path> answers ``{"access", "n_classes",
"input_shape"}``. Bind to 127.0.0.1 unless you mean to expose the model.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from robustlab.models.access import ACCESS_LEVELS

MAX_BODY_BYTES = 256 * 1024 * 1024


class _BadRequest(ValueError):
    pass


class ModelServer:
    """Serve ``model`` (an nn.Module or a callable returning (N, K) scores) over HTTP.

    Args:
        model: maps (N, ...) inputs in [0, 1] to (N, K) logits; run in eval mode, no gradient.
        host: interface to bind; 127.0.0.1 keeps it on this machine.
        port: TCP port; 0 picks a free one (see ``url``).
        access: "score" (answers scores or labels) or "label" (answers labels only).
        path: the endpoint's path.
        input_shape: the shape of one input, e.g. (1, 28, 28); checked on every request if given.
        max_batch: largest batch one request may carry.

    ``received`` counts the inputs the model was run on; ``requests`` the requests answered.
    """

    def __init__(self, model: Any, host: str = "127.0.0.1", port: int = 0, access: str = "score",
                 path: str = "/predict", input_shape: tuple[int, ...] | None = None, max_batch: int = 4096) -> None:
        if not callable(model):
            raise TypeError(f"model: expected an nn.Module or a callable, got {type(model).__name__}")
        if access not in ACCESS_LEVELS:
            raise ValueError(f"access: expected 'score' or 'label', got {access!r}")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"path: expected a path starting with '/', got {path!r}")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch: expected an int >= 1, got {max_batch!r}")
        if isinstance(model, nn.Module):
            model.eval()
        self.model = model
        self.access = access
        self.path = path
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.max_batch = max_batch
        self.received = 0
        self.requests = 0
        self.n_classes: int | None = None
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), self._handler())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{self.path}"

    def start(self) -> "ModelServer":
        """Serve in a background thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="robustlab-serve", daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling --------------------------------------------------------------------
    def _parse(self, body: bytes) -> tuple[Tensor, str]:
        try:
            doc = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _BadRequest("body: expected a JSON object") from None
        if not isinstance(doc, dict):
            raise _BadRequest("body: expected a JSON object")
        output = doc.get("output", "scores" if self.access == "score" else "labels")
        if output not in ("scores", "labels"):
            raise _BadRequest(f"output: expected 'scores' or 'labels', got {output!r}")
        if output == "scores" and self.access == "label":
            raise _BadRequest("output: this endpoint is label-only; ask for 'labels'")
        if "data" in doc:
            shape = doc.get("shape")
            if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d >= 0 for d in shape):
                raise _BadRequest("shape: expected a list of non-negative ints with 'data'")
            try:
                raw = base64.b64decode(doc["data"], validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise _BadRequest("data: expected base64 of float32 little-endian values") from None
            if len(raw) != 4 * math.prod(shape):
                raise _BadRequest(f"data: {len(raw)} bytes do not match shape {shape} of float32")
            x = torch.from_numpy(np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape))
        elif "inputs" in doc:
            try:
                x = torch.tensor(doc["inputs"], dtype=torch.float32)
            except (TypeError, ValueError, RuntimeError):
                raise _BadRequest("inputs: expected a rectangular nested list of numbers") from None
        else:
            raise _BadRequest("body: expected 'inputs' (nested lists) or 'data' + 'shape' (base64)")
        if x.dim() < 2 or x.shape[0] == 0:
            raise _BadRequest(f"inputs: expected a non-empty batch (N, ...), got shape {list(x.shape)}")
        if x.shape[0] > self.max_batch:
            raise _BadRequest(f"inputs: batch of {x.shape[0]} exceeds max_batch {self.max_batch}")
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            raise _BadRequest(f"inputs: expected shape (N, {', '.join(map(str, self.input_shape))}), got {list(x.shape)}")
        if not bool(torch.isfinite(x).all()) or float(x.min()) < 0 or float(x.max()) > 1:
            raise _BadRequest("inputs: values must be finite and in [0, 1]")
        return x, output

    def _answer(self, x: Tensor, output: str) -> dict[str, Any]:
        with self._lock, torch.no_grad():
            out = self.model(x)
            self.received += x.shape[0]
        if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
            raise RuntimeError(f"model returned {type(out).__name__} {tuple(getattr(out, 'shape', ()))}, "
                               f"expected ({x.shape[0]}, n_classes)")
        self.n_classes = int(out.shape[1])
        if output == "labels":
            return {"labels": out.argmax(dim=1).tolist(), "n_classes": self.n_classes}
        return {"scores": out.float().tolist(), "n_classes": self.n_classes}

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet by default
                pass

            def _send(self, code: int, doc: dict[str, Any]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != server.path:
                    self._send(404, {"error": f"no such path {self.path!r}; the model is at {server.path!r}"})
                    return
                self._send(200, {"access": server.access, "n_classes": server.n_classes,
                                 "input_shape": list(server.input_shape) if server.input_shape else None})

            def do_POST(self) -> None:
                if self.path != server.path:
                    self._send(404, {"error": f"no such path {self.path!r}; the model is at {server.path!r}"})
                    return
                try:
                    length = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    self._send(411, {"error": "Content-Length required"})
                    return
                if length > MAX_BODY_BYTES:
                    self._send(413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"})
                    return
                body = self.rfile.read(length)
                try:
                    x, output = server._parse(body)
                    doc = server._answer(x, output)
                except _BadRequest as e:
                    self._send(400, {"error": str(e)})
                    return
                except Exception as e:  # the model failed: report it, keep serving
                    self._send(500, {"error": f"model failed: {type(e).__name__}: {e}"})
                    return
                with server._lock:
                    server.requests += 1
                self._send(200, doc)

        return Handler


def serve(model: Any, host: str = "127.0.0.1", port: int = 8000, access: str = "score",
          path: str = "/predict", input_shape: tuple[int, ...] | None = None) -> None:
    """Serve ``model`` in this thread until interrupted (Ctrl-C)."""
    ModelServer(model, host=host, port=port, access=access, path=path, input_shape=input_shape).serve_forever()


__all__ = ["ModelServer", "serve"]
