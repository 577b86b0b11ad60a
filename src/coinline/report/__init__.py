"""The oversight report of a training run: one self-contained HTML page (`coinline report RUN_ID --out F`).

`build_report` renders the page; `report_content` gives the same sections (tables and PNG figures) for other
renderers, e.g. Kubeflow Pipelines Markdown/HTML visualizations; `metrics_sections` the sections drawn from a
metrics.json alone; `render_page` turns sections into a self-contained page.
"""

from coinline.report.build import ReportContent, ReportError, build_report, metrics_sections, report_content
from coinline.report.html import Badge, Plot, Section, Table, render_page

__all__ = ["Badge", "Plot", "ReportContent", "ReportError", "Section", "Table", "build_report", "metrics_sections",
           "render_page", "report_content"]
