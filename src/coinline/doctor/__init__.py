"""`coinline doctor`: find what is damaged in the lake (Delta logs, checkpoints, data files, leases), say it in
one line each with its repair, and perform the safe repairs with nothing committed lost (see run.py)."""

from coinline.doctor.run import doctor, report_text

__all__ = ["doctor", "report_text"]
