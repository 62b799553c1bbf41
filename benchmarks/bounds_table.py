"""Markdown table of benchmarks/bounds_vs_lirpa.py results: python benchmarks/bounds_table.py FILE.json ..."""
from __future__ import annotations

import json
import sys


def main() -> None:
    print("| net | eps | method | auto_LiRPA conv_mode | max rel. diff | one point at a time | width vs auto_LiRPA "
          "| ours (CPU s) | auto_LiRPA (CPU s) | time ratio | wall ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for path in sys.argv[1:]:
        for r in json.load(open(path))["rows"]:
            if "lirpa_error" in r:
                print(f"| {r['net']} | {r['eps']} | {r['method']} | default | auto_LiRPA failed: "
                      f"`{r['lirpa_error'][:70]}` | | | | | | |")
                continue
            one = r.get("max_rel_diff_lirpa_one_point_at_a_time")
            print(f"| {r['net']} | {r['eps']} | {r['method']} | {r.get('lirpa_conv_mode', 'default')} | "
                  f"{r['max_rel_diff']:.1e} | {'' if one is None else f'{one:.1e}'} | "
                  f"{100 * r['interval_width_vs_lirpa']:+.2f}% | {r['ours_s']:.3f} | {r['lirpa_s']:.3f} | "
                  f"{r['time_ratio']:.2f}x | "
                  f"{(r['ours_wall_s'] / r['lirpa_wall_s']) if 'ours_wall_s' in r else r['time_ratio']:.2f}x |")


if __name__ == "__main__":
    main()
