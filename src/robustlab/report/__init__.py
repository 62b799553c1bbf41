"""Reports of stored evaluations: plots (matplotlib), the HTML run report, the leaderboard."""
from robustlab.report.html import render_report, write_report
from robustlab.report.leaderboard import leaderboard, write_leaderboard

__all__ = ["render_report", "write_report", "leaderboard", "write_leaderboard"]
