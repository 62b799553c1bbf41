"""Evaluation configs as TOML: every CLI run writes the one it used, and
``robustlab evaluate --config FILE`` reproduces it.

    # robustlab evaluation config
    [model]
    name = "mnist-cnn-at"        # a shipped model, or a builder file such as "model.py"
    device = "cpu"

    [data]
    name = "mnist"
    split = "test"
    start = 0
    n = 1000                     # or "all"

    [evaluation]
    threat = "linf:0.3"
    attacks = "pgd"
    batch_size = 500
    seed = 0
    diagnostics = true

    [gate]
    min_robust_acc = 0.8         # optional: exit 1 when robust accuracy falls below it

    [run]
    store = "runs.db"            # optional
    workers = 0                  # > 0: shard the batches over that many Ray workers
    ray = "auto"                 # optional: address of an existing Ray cluster

Relative paths (the builder file, weights, the store) are relative to the config file's
folder, so a config and its store can move together. Read with the standard ``tomllib``;
written by a small writer here (the values are flat strings, numbers and booleans).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustlab.models.precision import PRECISIONS

# TOML section of each field.
_SECTIONS: dict[str, tuple[str, ...]] = {
    "model": ("model", "weights", "device", "access", "timeout", "retries"),
    "data": ("data", "split", "start", "n"),
    "evaluation": ("threat", "attacks", "certify", "batch_size", "seed", "diagnostics", "precision"),
    "gate": ("min_robust_acc",),
    "run": ("store", "workers", "ray"),
}
# Field name -> key inside its section, where they differ.
_KEY = {"model": "name", "data": "name"}
_PATHS = ("weights", "store")  # and "model" when it names a .py file


@dataclass
class EvalConfig:
    """Everything ``robustlab evaluate`` needs to repeat a run.

    Attributes:
        model: a shipped model name or the path of a builder file (``.py``).
        weights: safetensors weights for a builder file.
        device: "cpu", "cuda", "cuda:1", ...
        access: what the attacks may see: "white", "score" or "label".
        data, split, start, n: which points (n None: all from ``start``).
        threat: a threat spec, e.g. "linf:0.3", "l2:1.5" (any prefix of ``threats.threat_prefixes()``).
        attacks: comma-separated attack spec, e.g. "fgsm,pgd-100x2".
        certify: comma-separated certifier spec, e.g. "crown" (None: no certificates).
        batch_size, seed: as for ``robustlab.evaluate``.
        diagnostics: the gradient-masking checks: "fast" (or true), "full", "off" (or false).
        precision: "fp32", "bf16" or "fp16": the precision the attacks search in (success is
            always decided in the model's own precision).
        min_robust_acc: the gate, a fraction in [0, 1]; None for no gate.
        store: SQLite result store path; None for none.
        workers: Ray workers to shard batches over (0: in this process).
        ray: address of a running Ray cluster (None: a local one when workers > 0).
        timeout, retries: for an http(s):// model, seconds to wait for each answer and further
            attempts after a failed request (connection error, timeout, 408, 429, 5xx).
    """

    model: str
    weights: str | None = None
    device: str = "cpu"
    access: str = "white"
    data: str = "mnist"
    split: str = "test"
    start: int = 0
    n: int | None = 1000
    threat: str = "linf:0.3"
    attacks: str = "pgd"
    certify: str | None = None
    batch_size: int = 500
    seed: int = 0
    diagnostics: bool | str = True
    precision: str = "fp32"
    min_robust_acc: float | None = None
    store: str | None = None
    workers: int = 0
    ray: str | None = None
    timeout: float = 10.0
    retries: int = 3

    def __post_init__(self) -> None:
        _check(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """sha256 of the settings that decide the numbers (not where they are stored or how
        many workers computed them)."""
        d = {k: v for k, v in self.to_dict().items()
             if k not in ("store", "workers", "ray", "device", "timeout", "retries")}
        if d["precision"] == "fp32":  # the default leaves digests of older configs unchanged
            del d["precision"]
        if d["certify"] is None:
            del d["certify"]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,), "weights": (str,), "device": (str,), "data": (str,), "split": (str,),
    "start": (int,), "n": (int,), "threat": (str,), "attacks": (str,), "certify": (str,), "batch_size": (int,),
    "seed": (int,), "diagnostics": (bool, str), "min_robust_acc": (int, float), "store": (str,),
    "workers": (int,), "ray": (str,), "access": (str,), "precision": (str,), "timeout": (int, float),
    "retries": (int,),
}
_OPTIONAL = {"weights", "n", "min_robust_acc", "store", "ray", "certify"}


def _where(name: str) -> str:
    for sec, names in _SECTIONS.items():
        if name in names:
            return f"[{sec}] {_KEY.get(name, name)}"
    return name  # pragma: no cover


def _check(cfg: EvalConfig) -> None:
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if v is None and f.name in _OPTIONAL:
            continue
        types = _TYPES[f.name]
        ok = isinstance(v, types) and not (isinstance(v, bool) and bool not in types)
        if not ok:
            want = " or ".join(t.__name__ for t in types)
            raise ValueError(f"config: {_where(f.name)}: expected {want}, got {v!r}")
    if not cfg.model:
        raise ValueError("config: [model] name: expected a shipped model name or a builder file")
    from robustlab.threats import parse_threat

    try:
        parse_threat(cfg.threat)
    except ValueError as e:
        raise ValueError(f"config: [evaluation] threat: {str(e).removeprefix('threat: ')}") from None
    if cfg.diagnostics not in (True, False, "fast", "full", "off"):
        raise ValueError(f"config: [evaluation] diagnostics: expected fast, full or off, got {cfg.diagnostics!r}")
    # true/false as written by earlier releases; "full" is the one setting that needs a string
    cfg.diagnostics = {"fast": True, "off": False}.get(cfg.diagnostics, cfg.diagnostics)  # type: ignore[arg-type]
    if cfg.access not in ("white", "score", "label"):
        raise ValueError(f"config: [model] access: expected white, score or label, got {cfg.access!r}")
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"config: [evaluation] precision: expected one of {sorted(PRECISIONS)}, "
                         f"got {cfg.precision!r}")
    if cfg.n is not None and cfg.n <= 0:
        raise ValueError(f"config: [data] n: expected a positive number of points, got {cfg.n}")
    if cfg.start < 0:
        raise ValueError(f"config: [data] start: expected an index >= 0, got {cfg.start}")
    if cfg.batch_size <= 0:
        raise ValueError(f"config: [evaluation] batch_size: expected an int >= 1, got {cfg.batch_size}")
    if not (math.isfinite(float(cfg.timeout)) and cfg.timeout > 0):
        raise ValueError(f"config: [model] timeout: expected a positive number of seconds, got {cfg.timeout}")
    cfg.timeout = float(cfg.timeout)
    if cfg.retries < 0:
        raise ValueError(f"config: [model] retries: expected an int >= 0, got {cfg.retries}")
    if cfg.workers < 0:
        raise ValueError(f"config: [run] workers: expected an int >= 0, got {cfg.workers}")
    if cfg.min_robust_acc is not None:
        m = float(cfg.min_robust_acc)
        if not (math.isfinite(m) and 0.0 <= m <= 1.0):
            raise ValueError(f"config: [gate] min_robust_acc: expected a fraction in [0, 1], got {cfg.min_robust_acc}")
        cfg.min_robust_acc = m


def _resolve(value: str, base: Path) -> str:
    p = Path(value).expanduser()
    return os.path.normpath(p if p.is_absolute() else (base / p))


def _relativize(value: str, base: Path) -> str:
    p = Path(value).resolve()
    try:
        return os.path.relpath(p, base.resolve())
    except ValueError:  # another drive (Windows)
        return str(p)


def _is_path_field(name: str, value: Any) -> bool:
    return isinstance(value, str) and (name in _PATHS or (name == "model" and value.endswith(".py")))


def load_config(path: str | Path) -> EvalConfig:
    """Read an evaluation config (TOML). Errors name the file, the section and the key."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config: no such file {str(path)!r}")
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config: {str(path)!r} is not valid TOML ({e})") from None
    values: dict[str, Any] = {}
    for sec, body in raw.items():
        if sec not in _SECTIONS:
            raise ValueError(f"config: {str(path)!r}: unknown section [{sec}]; expected {sorted(_SECTIONS)}")
        if not isinstance(body, dict):
            raise ValueError(f"config: {str(path)!r}: [{sec}] must be a table")
        keys = {_KEY.get(n, n): n for n in _SECTIONS[sec]}
        for k, v in body.items():
            if k not in keys:
                raise ValueError(f"config: {str(path)!r}: unknown key [{sec}] {k}; expected one of {sorted(keys)}")
            values[keys[k]] = v
    if values.get("n") == "all":  # TOML has no null: "all" stands for every point from start
        values["n"] = None
    if "model" not in values:
        raise ValueError(f"config: {str(path)!r}: missing [model] name")
    base = path.resolve().parent
    for k, v in list(values.items()):
        if _is_path_field(k, v):
            values[k] = _resolve(v, base)
    try:
        return EvalConfig(**values)
    except ValueError as e:
        raise ValueError(f"{e} (in {str(path)!r})") from None


def _toml_str(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    return _toml_str(str(v))


def dumps_config(cfg: EvalConfig, base: str | Path | None = None) -> str:
    """The config as TOML text; paths relative to ``base`` (a folder) when given."""
    lines = ["# robustlab evaluation config; reproduce the run with:",
             "#   robustlab evaluate --config THIS_FILE", ""]
    d = cfg.to_dict()
    for sec, names in _SECTIONS.items():
        body = []
        for name in names:
            v = d[name]
            if v is None and name == "n":
                v = "all"
            if v is None:
                continue
            if base is not None and _is_path_field(name, v):
                v = _relativize(v, Path(base))
            body.append(f"{_KEY.get(name, name)} = {_toml_value(v)}")
        if body:
            lines += [f"[{sec}]", *body, ""]
    return "\n".join(lines)


def save_config(cfg: EvalConfig, path: str | Path) -> Path:
    """Write ``cfg`` as TOML at ``path`` (paths inside made relative to its folder)."""
    path = Path(path)
    if not path.parent.exists():
        raise ValueError(f"config: folder {str(path.parent)!r} does not exist")
    text = dumps_config(cfg, base=path.resolve().parent)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)  # never leave a half-written config behind
    except OSError as e:
        tmp.unlink(missing_ok=True) if tmp.parent.exists() and os.access(tmp.parent, os.W_OK) else None
        raise ValueError(f"config: cannot write {str(path)!r} ({e.strerror or e})") from None
    return path


def default_config_path(cfg: EvalConfig) -> Path | None:
    """Where a CLI run writes its config unless told (``--save-config``): next to the store
    (``runs.db`` -> ``runs-<digest12>.toml``); without a store, nowhere."""
    tag = cfg.digest()[:12]
    if cfg.store:
        s = Path(cfg.store)
        return s.with_name(f"{s.stem}-{tag}.toml")
    return None


__all__ = ["EvalConfig", "load_config", "save_config", "dumps_config", "default_config_path"]
