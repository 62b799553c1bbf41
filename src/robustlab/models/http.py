"""``HTTPModel``: a model behind a JSON endpoint (see ``robustlab.models.serve``), queried in
batches over HTTP POST with a timeout, retries and a query budget, at score or label access."""
from __future__ import annotations

import base64
import json
import math
import socket
import time
import urllib.error
import urllib.request
from typing import Any

import torch
from torch import Tensor

from robustlab.models.access import (_Access, _as_tensor, _check_access, _check_budget, _check_labels,  # noqa: F401
                                     _check_n_classes, _check_scores, QueryBudgetExceeded)
from robustlab.validation import check_inputs, probe_model  # noqa: F401


class HTTPError(RuntimeError):
    """The endpoint failed for good: retries exhausted, or a client error (4xx)."""


_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


class HTTPModel(_Access):
    """A model behind a JSON endpoint, queried in batches over HTTP POST.

    Request: ``{"inputs": [[...]], "output": "scores" | "labels"}`` (nested lists, shape
    (N, ...)), or with ``encoding="base64"`` ``{"data": <base64 of float32 little-endian>,
    "shape": [N, ...], "output": ...}``. Response: ``{"scores": [[...]]}`` (N, K) or
    ``{"labels": [...]}`` (N,). ``robustlab.models.serve`` implements the server side.

    Args:
        url: the endpoint, e.g. "http://127.0.0.1:8000/predict".
        access: "score" or "label".
        batch_size: inputs per request.
        timeout: seconds to wait for each response.
        retries: further attempts after a failed one (connection error, timeout, 408, 429, 5xx),
            waiting ``backoff * 2**attempt`` seconds between them.
        backoff: base wait in seconds.
        max_queries: total inputs the endpoint may receive, retries included (None: unlimited);
            a request that would go past it is not sent (QueryBudgetExceeded).
        n_classes: K, if known (score access reads it from the first answer).
        encoding: "list" (plain JSON numbers) or "base64" (compact, exact float32).
        headers: extra HTTP headers (e.g. an API key).

    ``queries`` counts every input sent, retries included: what the endpoint may have received.
    """

    def __init__(self, url: str, access: str = "label", *, batch_size: int = 256, timeout: float = 10.0,
                 retries: int = 3, backoff: float = 0.5, max_queries: int | None = None,
                 n_classes: int | None = None, encoding: str = "list",
                 headers: dict[str, str] | None = None) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url: expected an http:// or https:// URL, got {url!r}")
        self.access = _check_access(access)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
            raise ValueError(f"timeout: expected a positive number of seconds, got {timeout!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries: expected an int >= 0, got {retries!r}")
        if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or not 0 <= backoff < math.inf:
            raise ValueError(f"backoff: expected a number of seconds >= 0, got {backoff!r}")
        if encoding not in ("list", "base64"):
            raise ValueError(f"encoding: expected 'list' or 'base64', got {encoding!r}")
        super().__init__(n_classes, max_queries)
        self.url = url
        self.batch_size = batch_size
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)
        self.encoding = encoding
        self.headers = dict(headers or {})
        self.requests = 0  # HTTP requests sent, retries included

    def __repr__(self) -> str:
        return f"HTTPModel({self.url!r}, access={self.access!r})"

    def __call__(self, x: Tensor) -> Tensor:
        x = self._check_x(x)
        if self.access == "label":
            return super().__call__(x)  # raises the label-only TypeError
        self._reserve(x.shape[0])
        out = torch.cat([self._post(c, "scores") for c in x.split(self.batch_size)])
        if self.n_classes is None:
            self.n_classes = int(out.shape[1])
        return out.to(x.device)

    def fingerprint(self) -> str:
        return f"HTTPModel:{self.access}:{self.url}"

    def _predict_labels(self, x: Tensor) -> Tensor:
        """(N,) int64 labels from a label-only endpoint (``predict_labels`` on label access)."""
        x = self._check_x(x)
        self._reserve(x.shape[0])
        return torch.cat([self._post(c, "labels") for c in x.split(self.batch_size)]).to(x.device)

    def _reserve(self, n: int) -> None:
        # Check the whole call fits before sending its first request; each request then
        # spends its own share (and retries spend again, checked before they are sent).
        if self.max_queries is not None and self.queries + n > self.max_queries:
            raise QueryBudgetExceeded(
                f"max_queries: a batch of {n} would exceed the budget of {self.max_queries} "
                f"({self.queries} already used)"
            )

    def _encode(self, x: Tensor, output: str) -> bytes:
        xc = x.detach().cpu().to(torch.float32).contiguous()
        if self.encoding == "base64":
            raw = xc.numpy().astype("<f4").tobytes()
            body: dict[str, Any] = {"data": base64.b64encode(raw).decode("ascii"), "shape": list(xc.shape)}
        else:
            body = {"inputs": xc.tolist()}
        body["output"] = output
        return json.dumps(body).encode()

    def _post(self, x: Tensor, output: str) -> Tensor:
        payload = self._encode(x, output)
        n = x.shape[0]
        last: str = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            self._spend(n)
            self.requests += 1
            req = urllib.request.Request(self.url, data=payload, method="POST",
                                         headers={"Content-Type": "application/json", **self.headers})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read()
            except urllib.error.HTTPError as e:
                detail = _error_detail(e)
                if e.code in _RETRY_STATUS:
                    last = f"HTTP {e.code}{detail}"
                    continue
                raise HTTPError(f"url: {self.url} answered HTTP {e.code}{detail}") from None
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as e:
                reason = getattr(e, "reason", e)
                last = f"timed out after {self.timeout:g}s" if isinstance(reason, (socket.timeout, TimeoutError)) \
                    else f"connection failed: {reason}"
                continue
            return self._decode(raw, n, output)
        raise HTTPError(f"url: {self.url} failed after {self.retries + 1} attempts; last: {last}")

    def _decode(self, raw: bytes, n: int, output: str) -> Tensor:
        what = f"url: bad response from {self.url}"
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError(f"{what}: not JSON (starts {raw[:60]!r})") from None
        if not isinstance(doc, dict) or output not in doc:
            keys = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
            raise ValueError(f"{what}: expected a JSON object with {output!r}, got {keys}")
        try:
            out = torch.tensor(doc[output], dtype=torch.float32 if output == "scores" else torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"{what}: {output!r} is not a rectangular array of numbers") from None
        if output == "scores":
            return _check_scores(out, n, what, self.n_classes)
        return _check_labels(out, n, what, self.n_classes)


def _error_detail(e: urllib.error.HTTPError) -> str:
    try:
        body = e.read()[:300].decode("utf-8", "replace")
        msg = json.loads(body).get("error", body) if body.strip().startswith("{") else body
    except Exception:  # the detail is a courtesy; the status code is the error
        return ""
    return f": {str(msg).strip()}" if str(msg).strip() else ""


