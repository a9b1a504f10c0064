"""Fixtures of the report tests: the headless browser (report_browser.py) for the tests that drive the page."""

from report_browser import browser  # noqa: F401  (a fixture, shared by the browser test modules)
