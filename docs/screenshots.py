"""Re-take the dashboard screenshots the README shows, from a store of your own.

    PYTHONPATH=. .venv/bin/python docs/screenshots.py sqlite:///bitprism.db demo-digits 25

(needs Debian's chromium and chromium-driver, as the browser test does). Writes
docs/dashboard_pareto.png and docs/dashboard_trial.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from tests.dashboard.browser import chromium, free_port, served

DOCS = Path(__file__).parent


def main(store: str, job: str, trial: str) -> None:
    with served(store, free_port()) as base, chromium() as browser:
        wait = WebDriverWait(browser, 60)
        for page, query, name in (
            ("pareto", f"job={job}", "dashboard_pareto.png"),
            ("trial", f"job={job}&trial={trial}", "dashboard_trial.png"),
        ):
            browser.get(f"{base}/{page}?{query}")
            wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".js-plotly-plot")))
            wait.until(lambda b: b.find_element(By.CSS_SELECTOR, ".js-plotly-plot .main-svg"))
            browser.save_screenshot(str(DOCS / name))
            print(f"wrote {DOCS / name}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
