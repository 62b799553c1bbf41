"""The report's text section: each original sentence beside its adversarial version, the changed
words highlighted (removed words struck through in the original, new words marked in the
adversarial), with the labels, the model's new prediction and the fraction of words changed.

    html = text_section(originals, adversarials, y, pred_adv, classes=["negative", "positive"])
"""
from __future__ import annotations

import difflib
from collections.abc import Sequence
from html import escape

STYLE = """<style>
.rl-text table{border-collapse:collapse;width:100%;font-size:14px}
.rl-text td,.rl-text th{border-bottom:1px solid #ddd;padding:6px;vertical-align:top;text-align:left}
.rl-text del{background:#fdd;text-decoration:line-through}
.rl-text ins{background:#cfc;text-decoration:none;font-weight:600}
</style>"""


def highlight(orig: str, adv: str) -> tuple[str, str]:
    """HTML of ``orig`` with removed words in <del> and of ``adv`` with new words in <ins>
    (word-level alignment on whitespace tokens; everything escaped)."""
    a, b = orig.split(), adv.split()
    left: list[str] = []
    right: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        old, new = " ".join(a[i1:i2]), " ".join(b[j1:j2])
        if op == "equal":
            left.append(escape(old))
            right.append(escape(new))
            continue
        if old:
            left.append(f"<del>{escape(old)}</del>")
        if new:
            right.append(f"<ins>{escape(new)}</ins>")
    return " ".join(left), " ".join(right)


def text_section(originals: Sequence[str], adversarials: Sequence[str], labels: Sequence[int],
                 predictions: Sequence[int] | None = None, classes: Sequence[str] | None = None,
                 distance: Sequence[float] | None = None, limit: int = 50, title: str = "Adversarial sentences") -> str:
    """An HTML fragment (a <section>) listing the changed sentences, at most ``limit`` rows.

    Args:
        originals, adversarials: N sentences each (an unchanged pair is skipped).
        labels: N true classes; predictions: N classes the model gives the adversarial sentence.
        classes: class names (default: the indices); distance: N fractions of words changed.
    """
    n = len(originals)
    for name, seq in (("adversarials", adversarials), ("labels", labels), ("predictions", predictions),
                      ("distance", distance)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name}: expected {n} entries (one per original), got {len(seq)}")

    def cls(c: int) -> str:
        return escape(str(classes[c])) if classes is not None and 0 <= c < len(classes) else str(c)

    rows = []
    for i in range(n):
        if originals[i] == adversarials[i]:
            continue
        left, right = highlight(originals[i], adversarials[i])
        pred = f" &rarr; {cls(int(predictions[i]))}" if predictions is not None else ""
        dist = f"<br><small>{100 * float(distance[i]):.0f}% of words</small>" if distance is not None else ""
        rows.append(f"<tr><td>{i}</td><td>{cls(int(labels[i]))}{pred}{dist}</td><td>{left}</td><td>{right}</td></tr>")
        if len(rows) == limit:
            break
    body = "".join(rows) or '<tr><td colspan="4">no sentence was changed</td></tr>'
    return (f'<section class="rl-text">{STYLE}<h2>{escape(title)}</h2><table><tr><th>#</th><th>label</th>'
            f"<th>original</th><th>adversarial</th></tr>{body}</table></section>")
