"""Reports of a run: report.json (machine), report.md (people), report.html (self-contained, with plots)."""
