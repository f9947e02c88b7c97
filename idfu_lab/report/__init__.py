"""The report: figures (:mod:`.plots`), the delta's HTML page (:mod:`.delta_html`) and the Jupyter Book
built from a run (:mod:`.book`)."""
