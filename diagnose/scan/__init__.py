"""Fleet scans: list many ECS instances, fetch within the API's limits, diagnose each one.

``diagnose scan`` (see cli.py) drives runner.Scanner; state.py keeps a SQLite record of every
instance so an interrupted scan resumes without losing or repeating work; fleet_html.py writes
the summary page.
"""
