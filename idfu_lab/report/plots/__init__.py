"""Figures, one module per part of the study (audit, training, evaluation, taxonomy, summary).

Every function takes data (a DataFrame or dict) and returns a matplotlib Figure with a title and
labelled axes; notebooks display and glue them, the package never shows them itself.
"""
