"""Sound bounds on a network's outputs over a threat ball: IBP, CROWN and alpha-CROWN.

    lower, upper = bounds(model, x, LpBall("linf", 0.3), method="crown", spec=margins)

The input set of sample i is the threat's ball of radius ``threat.radius(x)[i]`` around x[i],
intersected with the pixel box [0, 1]. For every input z in that set and every row s,
``lower[i, s] <= (spec[i] @ model(z))[s] <= upper[i, s]``.

Methods (Gowal et al. 2018; Zhang et al. 2018, 2020; Xu et al. 2021):
- ``"ibp"``: interval arithmetic, one pass. With a spec and a final Linear layer the spec is
  folded into that layer's weights first (as auto_LiRPA does), which is tighter.
- ``"crown-ibp"``: IBP bounds on every intermediate layer, one CROWN back-substitution of the
  spec (the certified-training bound of Zhang et al. 2020).
- ``"crown"``: every pre-activation layer is bounded by CROWN back-substitution from that layer,
  but only for the neurons that IBP (from the already refined layers) leaves unstable, per
  sample; stable neurons keep their IBP bounds (a stable neuron's relaxation is exact either
  way). auto_LiRPA's default ("sparse intermediate bounds") does the same over the batch.
- ``"alpha-crown"``: CROWN's intermediate bounds, then the lower slopes of unstable ReLUs are
  optimised (projected Adam) separately for each spec row and for the lower and upper side.

Memory: back-substitution starts from the spec (or a chunk of identity rows of the layer being
bounded, never the input) and its coefficient tensors stay within ``max_elements`` floats.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustlab.certify.graph import Node, build_graph
from robustlab.certify.ops import (
    backward_affine,
    backward_relu,
    interval_affine,
    relu_relaxation,
)
from robustlab.certify.window import (
    WINDOWED,
    Window,
    add_functions,
    gather,
    gather_rows,
    to_dense,
    window_affine,
)
from robustlab.models.layers import Normalize
from robustlab.threats import check_lp

METHODS = ("ibp", "crown-ibp", "crown", "alpha-crown")
ELEMENTWISE = (nn.Flatten, Normalize, nn.BatchNorm2d)
WINDOWS = True  # intermediate rows on conv maps start as windows (False: dense rows, for tests)
MAX_ELEMENTS = 2 ** 25  # floats in one back-substitution coefficient tensor (128 MiB)


@dataclass(frozen=True)
class Domain:
    """The input set: box [xl, xu] (N, *shape) = the ball's bounding box cut to [0, 1], and for
    Lp balls other than Linf the ball itself (centre x0, radius eps (N,), dual exponent q)."""

    xl: Tensor
    xu: Tensor
    x0: Tensor
    eps: Tensor
    q: float | None  # None: the box is the whole set (Linf)


def input_domain(x: Tensor, threat: object) -> Domain:
    ball = check_lp(threat)
    eps = ball.radius(x).to(x.dtype).reshape(-1)
    if eps.shape[0] != x.shape[0]:
        raise ValueError(f"threat: radius(x) gave {eps.shape[0]} values for {x.shape[0]} samples")
    e = eps.view(-1, *([1] * (x.dim() - 1)))
    xl, xu = (x - e).clamp(0, 1), (x + e).clamp(0, 1)
    q = {"linf": None, "l2": 2.0, "l1": float("inf")}[ball.norm]
    return Domain(xl, xu, x, eps, q)


def concretize(a: Tensor | Window, bias: Tensor, dom: Domain, upper_side: bool | Tensor) -> Tensor:
    """min (or max) over the input set of a . z + bias, for a (N, S, *in shape) or a ``Window``
    on the input map: (N, S). ``upper_side``: max (True) or min (False), or an (S,) bool tensor
    choosing per row.

    Box: a . centre -+ |a| . radius. Lp ball (p < inf): a . x0 -+ eps ||a||_q; the set is inside
    both, so the tighter of the two is sound."""
    per_row = isinstance(upper_side, Tensor)
    sign = (upper_side.to(bias.dtype) * 2 - 1) if per_row else (1.0 if upper_side else -1.0)

    def tighter(out: Tensor, ball: Tensor) -> Tensor:
        if per_row:
            return torch.where(upper_side, torch.minimum(out, ball), torch.maximum(out, ball))
        return torch.minimum(out, ball) if upper_side else torch.maximum(out, ball)
    if isinstance(a, Window):  # coefficients outside the window are zero: sum over it only
        c, r = gather((dom.xl + dom.xu) / 2, a), gather((dom.xu - dom.xl) / 2, a)
        out = (a.a * c).sum((2, 3, 4)) + sign * (a.a.abs() * r).sum((2, 3, 4))
        if dom.q is not None:
            af = a.a.flatten(2)
            ball = (a.a * gather(dom.x0, a)).sum((2, 3, 4)) + sign * dom.eps[:, None] * af.norm(p=dom.q, dim=2)
            out = tighter(out, ball)
        return out + bias
    af = a.flatten(2)
    c = ((dom.xl + dom.xu) / 2).flatten(1).unsqueeze(2)
    r = ((dom.xu - dom.xl) / 2).flatten(1).unsqueeze(2)
    out = (af @ c).squeeze(2) + sign * (af.abs() @ r).squeeze(2)
    if dom.q is not None:
        ball = (af @ dom.x0.flatten(1).unsqueeze(2)).squeeze(2) + sign * dom.eps[:, None] * af.norm(p=dom.q, dim=2)
        out = tighter(out, ball)
    return out + bias


def _backsub(nodes: list[Node], start: int, a: Tensor | Window, relax: dict[int, tuple[Tensor, Tensor, Tensor]],
             upper_side: bool | Tensor, alphas: dict[int, Tensor] | None = None,
             record: dict[int, Tensor | Window] | None = None) -> tuple[Tensor | Window, Tensor]:
    """Pull the linear function ``a`` (N, S, *shape of node start), dense or a ``Window``, back
    to the input. ``alphas``: lower slopes per ReLU node, used on its unstable neurons: (N, S,
    *shape) per row, or (N, S, C, h, w) on the rows' windows; ``record`` receives the function
    (dense or window) reaching each ReLU node. Returns (A at the input: (N, S, *input shape), or a ``Window`` if ``a`` was one
    and stayed smaller than the maps, bias (N, S)).

    A window stays a window through convolutions, pooling, elementwise layers, ReLUs and
    additions while it is smaller than its map, and becomes dense after that."""
    pending: dict[int, Tensor | Window] = {start: a}
    first = a.a if isinstance(a, Window) else a
    bias = first.new_zeros(first.shape[:2])
    for k in range(start, 0, -1):
        ak = pending.pop(k, None)
        if ak is None:
            continue
        node = nodes[k]
        if isinstance(ak, Window) and ak.a.shape[3] * ak.a.shape[4] >= node.shape[1] * node.shape[2]:
            ak = to_dense(ak, node.shape)
        if node.kind == "add":
            for i in node.inputs:
                pending[i] = add_functions(pending[i], ak, nodes[i].shape) if i in pending else ak
            continue
        in_shape = nodes[node.inputs[0]].shape
        if node.kind == "affine":
            if isinstance(ak, Window) and isinstance(node.module, WINDOWED):
                a_in, b = window_affine(node.module, ak, in_shape)
            else:
                if isinstance(ak, Window):
                    ak = to_dense(ak, node.shape)
                a_in, b = backward_affine(node.module, ak, in_shape)  # type: ignore[arg-type]
        else:
            du, bu, dl = relax[k]
            if record is not None:
                record[k] = ak
            al = alphas.get(k) if alphas is not None else None
            if isinstance(ak, Window):
                du, bu, dl = gather(du, ak), gather(bu, ak), gather(dl, ak)
                if al is not None:
                    # slopes on the window itself, or per-row maps (N, S, *shape), or one map (N, *shape)
                    al = al if al.shape[2:] == ak.a.shape[2:] else (
                        gather_rows(al, ak) if al.dim() == 5 else gather(al, ak))
            elif al is not None and al.dim() == du.dim():
                al = al.unsqueeze(1)
            if al is not None:  # optimised slopes on unstable neurons only (0 < du < 1)
                shaped = (lambda t: t) if isinstance(ak, Window) else (lambda t: t.unsqueeze(1))
                dl = torch.where(shaped((du > 0) & (du < 1)), al, shaped(dl))
            if isinstance(ak, Window):
                w_in, b = backward_relu(ak.a, du, bu, dl, upper_side)
                a_in = Window(w_in, ak.off)
            else:
                a_in, b = backward_relu(ak, du, bu, dl, upper_side)
        bias = bias + b
        i = node.inputs[0]
        pending[i] = add_functions(pending[i], a_in, in_shape) if i in pending else a_in
    return pending[0], bias


def _interval(node: Node, lo: list[Tensor], hi: list[Tensor]) -> tuple[Tensor, Tensor]:
    if node.kind == "add":
        (i, j) = node.inputs
        return lo[i] + lo[j], hi[i] + hi[j]
    i = node.inputs[0]
    if node.kind == "relu":
        return lo[i].clamp(min=0), hi[i].clamp(min=0)
    c, r = interval_affine(node.module, (lo[i] + hi[i]) / 2, (hi[i] - lo[i]) / 2)  # type: ignore[arg-type]
    return c - r, c + r


def _unstable_rows(lk: Tensor, hk: Tensor) -> tuple[Tensor, Tensor] | None:
    """Per sample, the flat indices of the neurons with lk < 0 < hk (N, R), unstable first and
    padded to the largest count R in the batch, and which entries are real (N, R); None if none."""
    unstable = (lk < 0) & (hk > 0)
    counts = unstable.sum(1)
    r_max = int(counts.max()) if lk.shape[0] else 0
    if r_max == 0:
        return None
    order = torch.argsort((~unstable).to(torch.int8), dim=1, stable=True)[:, :r_max]
    return order, torch.arange(r_max, device=lk.device)[None, :] < counts[:, None]


def _identity_rows(shape: tuple[int, ...], cols: Tensor, ok: Tensor, like: Tensor) -> Tensor | Window:
    """Rows e_col (N, R, *shape) selecting neuron ``cols`` of a node (zero rows where not ``ok``);
    on a conv map each row is a 1x1 ``Window`` at its neuron."""
    n, r = cols.shape
    if len(shape) == 3 and WINDOWS:
        hw = shape[1] * shape[2]
        win = Window(like.new_zeros(n, r, shape[0], 1, 1), torch.stack((cols % hw // shape[2], cols % shape[2]), -1))
        win.a.view(n, r, shape[0]).scatter_(2, (cols // hw).unsqueeze(2), ok.unsqueeze(2).to(like.dtype))
        return win
    a = like.new_zeros(n, r, int(torch.tensor(shape).prod()))
    a.scatter_(2, cols.unsqueeze(2), ok.unsqueeze(2).to(like.dtype))
    return a.view(n, r, *shape)


def _refine(nodes: list[Node], k: int, lo: list[Tensor], hi: list[Tensor],
            relax: dict[int, tuple[Tensor, Tensor, Tensor]], dom: Domain, max_elements: int,
            intersect: bool = False) -> None:
    """Replace node k's interval bounds by CROWN bounds on the neurons they leave unstable.

    Each sample back-substitutes only its own unstable neurons (rows padded to the largest
    count in the batch), in chunks of rows that keep every coefficient tensor within
    ``max_elements`` floats."""
    n = lo[k].shape[0]
    lk, hk = lo[k].flatten(1), hi[k].flatten(1)
    rows = _unstable_rows(lk, hk)
    if rows is None:
        return
    order, valid = rows
    shape = nodes[k].shape
    width = n * max(int(torch.tensor(nd.shape).prod()) for nd in nodes[: k + 1])
    chunk = max(1, max_elements // width)
    new_l, new_u = lk.clone(), hk.clone()
    for s in range(0, order.shape[1], chunk):
        cols, ok = order[:, s:s + chunk], valid[:, s:s + chunk]
        a = _identity_rows(shape, cols, ok, lk)
        r = cols.shape[1]
        rows_n = torch.arange(n, device=lk.device)[:, None].expand(n, r)[ok]
        # lower and upper bounds in one pass: rows 0..r-1 bound from below, r..2r-1 from above
        a = Window(torch.cat((a.a, a.a), 1), torch.cat((a.off, a.off), 1)) if isinstance(a, Window) \
            else torch.cat((a, a), 1)
        side = torch.arange(2 * r, device=lk.device) >= r
        ab, bb = _backsub(nodes, k, a, relax, side)
        val = concretize(ab, bb, dom, side)
        del ab
        new_l[rows_n, cols[ok]] = val[:, :r][ok]
        new_u[rows_n, cols[ok]] = val[:, r:][ok]
    if intersect:  # both bounds are sound, so is the tighter of the two
        new_l, new_u = torch.maximum(new_l, lk), torch.minimum(new_u, hk)
    lo[k], hi[k] = new_l.view_as(lo[k]), new_u.view_as(hi[k])


def _spec_tensor(spec: Tensor | None, n: int, k: int, like: Tensor) -> Tensor:
    if spec is None:
        return torch.eye(k, dtype=like.dtype, device=like.device).expand(n, k, k)
    if not isinstance(spec, Tensor):
        raise TypeError(f"spec: expected a Tensor or None, got {type(spec).__name__}")
    if spec.dim() == 2:
        spec = spec.expand(n, *spec.shape)
    if spec.dim() != 3 or spec.shape[0] != n or spec.shape[2] != k:
        raise ValueError(f"spec: expected (S, {k}) or ({n}, S, {k}), got {tuple(spec.shape)}")
    return spec.to(like.dtype)


def _ibp_output(nodes: list[Node], lo: list[Tensor], hi: list[Tensor], spec: Tensor) -> tuple[Tensor, Tensor]:
    last = nodes[-1]
    if last.kind == "affine" and isinstance(last.module, nn.Linear):
        i = last.inputs[0]
        w = spec @ last.module.weight  # (N, S, D): spec folded into the last layer
        b = spec @ last.module.bias if last.module.bias is not None else 0.0
        c, r = ((lo[i] + hi[i]) / 2).unsqueeze(2), ((hi[i] - lo[i]) / 2).unsqueeze(2)
        mid, rad = (w @ c).squeeze(2) + b, (w.abs() @ r).squeeze(2)
        return mid - rad, mid + rad
    c, r = ((lo[-1] + hi[-1]) / 2).unsqueeze(2), ((hi[-1] - lo[-1]) / 2).unsqueeze(2)
    mid, rad = (spec @ c).squeeze(2), (spec.abs() @ r).squeeze(2)
    return mid - rad, mid + rad


def _relaxations(nodes: list[Node], lo: list[Tensor], hi: list[Tensor]) -> dict[int, tuple[Tensor, Tensor, Tensor]]:
    return {k: relu_relaxation(lo[nd.inputs[0]], hi[nd.inputs[0]]) for k, nd in enumerate(nodes) if nd.kind == "relu"}


def _optimise_alpha(nodes: list[Node], spec: Tensor, lo0: list[Tensor], hi0: list[Tensor], dom: Domain,
                    upper_side: bool, steps: int, lr: float, intermediate: bool = True) -> Tensor:
    """alpha-CROWN (Xu et al. 2021): the best bound of ``spec`` over ``steps`` projected-Adam steps
    on the lower ReLU slopes of every ReLU layer.

    Slopes are separate for the spec rows and, for every intermediate layer whose bounds depend
    on earlier ReLUs, for each of its unstable neurons (rows) and bound side; those layers'
    bounds are recomputed with their slopes at every step (kept no looser than ``lo0``/``hi0``,
    the CROWN bounds), so their ReLU relaxations tighten along with the output bound.
    ``intermediate=False`` optimises the output's slopes only (intermediate bounds fixed)."""
    relus = [k for k, nd in enumerate(nodes) if nd.kind == "relu"]
    pre = {nodes[k].inputs[0] for k in relus}
    relax0 = _relaxations(nodes, lo0, hi0)
    starts: dict[int, tuple[Tensor, Tensor]] = {}
    for p in sorted(pre):
        if intermediate and relus and p > relus[0]:
            rows = _unstable_rows(lo0[p].flatten(1), hi0[p].flatten(1))
            if rows is not None:
                starts[p] = rows

    def init(start: int, rows: Tensor | Window, count: int) -> dict[int, Tensor]:
        """CROWN's slopes, per row: on each row's window where the rows reach a ReLU as windows."""
        seen: dict[int, Tensor | Window] = {}
        with torch.no_grad():
            _backsub(nodes, start, rows, relax0, False, record=seen)
        out = {}
        for j, f in seen.items():
            dl = relax0[j][2]
            out[j] = (gather(dl, f) if isinstance(f, Window)
                      else dl.unsqueeze(1).expand(-1, count, *dl.shape[1:])).clone().requires_grad_(True)
        return out

    n = spec.shape[0]
    out_alpha = init(len(nodes) - 1, spec, spec.shape[1])
    mid_rows = {p: _identity_rows(nodes[p].shape, order, valid, lo0[p]) for p, (order, valid) in starts.items()}
    mid_alpha = {(p, side): init(p, mid_rows[p], starts[p][0].shape[1]) for p in starts for side in (False, True)}
    params = list(out_alpha.values()) + [t for d in mid_alpha.values() for t in d.values()]
    opt = torch.optim.Adam(params, lr=lr)
    best = None
    for step in range(steps + 1):
        lo, hi = list(lo0), list(hi0)
        relax: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
        for k, nd in enumerate(nodes):
            if k in starts:
                order, valid = starts[k]
                rows_n = torch.arange(n, device=order.device)[:, None].expand_as(order)[valid]
                for side in (False, True):
                    a, b = _backsub(nodes, k, mid_rows[k], relax, side, mid_alpha[(k, side)])
                    val = concretize(a, b, dom, side)
                    base = (hi0 if side else lo0)[k].flatten(1)
                    new = base.clone()
                    new[rows_n, order[valid]] = val[valid]
                    new = torch.minimum(new, base) if side else torch.maximum(new, base)
                    (hi if side else lo)[k] = new.view_as(lo0[k])
            if nd.kind == "relu":
                i = nd.inputs[0]
                relax[k] = relu_relaxation(lo[i], hi[i]) if i in starts else relax0[k]
        a, b = _backsub(nodes, len(nodes) - 1, spec, relax, upper_side, out_alpha)
        val = concretize(a, b, dom, upper_side)
        with torch.no_grad():
            best = val.detach().clone() if best is None else (torch.minimum if upper_side else torch.maximum)(best, val)
        if step == steps:
            break
        opt.zero_grad(set_to_none=True)
        (val.sum() if upper_side else -val.sum()).backward()
        opt.step()
        with torch.no_grad():
            for al in params:
                al.clamp_(0.0, 1.0)
    return best  # type: ignore[return-value]


def bounds(model: nn.Module, x: Tensor, threat: object, method: str = "crown", spec: Tensor | None = None,
           *, alpha_steps: int = 20, alpha_lr: float = 0.1, alpha_intermediate: bool = True,
           lower: bool = True, upper: bool = True,
           max_elements: int = MAX_ELEMENTS, intersect_ibp: bool = False) -> tuple[Tensor | None, Tensor | None]:
    """Lower and upper bounds of ``spec @ model(z)`` over the threat set around each x[i].

    Args:
        model: a graph of supported layers (see ``robustlab.certify.graph``), in eval mode.
        x: (N, *input shape) points in [0, 1].
        threat: an Lp ball (``check_lp``); its per-sample radius comes from ``threat.radius(x)``.
        method: "ibp", "crown-ibp", "crown" or "alpha-crown".
        spec: (S, K) or (N, S, K) rows of linear functions of the K logits (e.g. margins
            e_y - e_j); None bounds the logits themselves (S = K).
        alpha_steps, alpha_lr: alpha-CROWN's optimisation (ignored by other methods).
        alpha_intermediate: alpha-CROWN also optimises the slopes behind every intermediate
            layer's bounds (tighter, slower); False: the output's slopes only.
        lower, upper: which sides to compute (the other is returned as None).
        max_elements: cap on the floats of one back-substitution coefficient tensor.
        intersect_ibp: keep, neuron by neuron, the tighter of the CROWN and IBP intermediate
            bounds (sound, and much tighter on IBP-trained networks, where CROWN's intermediate
            bounds are often looser than IBP's); False gives auto_LiRPA's bounds.

    Returns:
        (lower (N, S), upper (N, S)); differentiable in the model's parameters except for
        alpha-CROWN. Raises ValueError naming the first unsupported layer.
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if not isinstance(x, Tensor) or x.dim() < 2:
        raise TypeError("x: expected a batched Tensor (N, ...)")
    nodes = build_graph(model, x)
    dom = input_domain(x, threat)
    spec_t = _spec_tensor(spec, x.shape[0], nodes[-1].shape[-1], x)
    feeds_relu = {nd.inputs[0] for nd in nodes if nd.kind == "relu"}
    lo, hi = [dom.xl], [dom.xu]
    mixing = 0  # IBP is exact through elementwise affine layers and one mixing layer on a box
    for k, node in enumerate(nodes[1:], start=1):
        lk, hk = _interval(node, lo, hi)
        lo.append(lk)
        hi.append(hk)
        elementwise = node.kind == "affine" and isinstance(node.module, ELEMENTWISE)
        mixing += 0 if elementwise else 1
        if method in ("crown", "alpha-crown") and k in feeds_relu and (mixing > 1 or dom.q is not None):
            _refine(nodes, k, lo, hi, _relaxations(nodes[: k + 1], lo, hi), dom, max_elements, intersect_ibp)
    if method == "ibp":
        lb, ub = _ibp_output(nodes, lo, hi, spec_t)
        return (lb if lower else None), (ub if upper else None)
    relax = _relaxations(nodes, lo, hi)
    out: list[Tensor | None] = []
    for side, want in ((False, lower), (True, upper)):
        if not want:
            out.append(None)
        elif method == "alpha-crown":
            with torch.enable_grad():
                out.append(_optimise_alpha(nodes, spec_t.detach(), [t.detach() for t in lo], [t.detach() for t in hi],
                                           dom, side, alpha_steps, alpha_lr, alpha_intermediate))
        else:
            a, b = _backsub(nodes, len(nodes) - 1, spec_t, relax, side)
            out.append(concretize(a, b, dom, side))
    return out[0], out[1]


def margin_spec(y: Tensor, k: int) -> Tensor:
    """(N, K - 1, K) rows e_y - e_j for every j != y[i]: the margins a certificate must keep > 0."""
    n = y.shape[0]
    eye = torch.eye(k, device=y.device)
    rows = eye[y].unsqueeze(1) - eye.unsqueeze(0)  # (N, K, K)
    keep = ~torch.nn.functional.one_hot(y, k).bool()
    return rows[keep].view(n, k - 1, k)
