"""The dashboard end to end in a real browser: `bitprism dashboard` on a loopback port,
headless Chromium on the Pareto page (plot and front in the DOM, a point clicked), then a
Trial page; screenshots under the test's tmp dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.dashboard.browser import browser_missing, chromium, free_port, served

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _needs_a_browser() -> None:
    why = browser_missing()
    if why is not None:
        if os.environ.get("BITPRISM_REQUIRE_BROWSER"):  # CI installs it: a skip would hide it
            pytest.fail(f"the browser test needs Debian's chromium and chromium-driver ({why})")
        pytest.skip(f"no browser to drive ({why}); .ci/run installs one")


def test_pareto_and_trial_pages_in_chromium(job_store: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    with served(job_store, free_port()) as base, chromium() as browser:
        wait = WebDriverWait(browser, 60)
        browser.get(f"{base}/pareto?job=job")
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".js-plotly-plot")))
        legend = wait.until(
            ready.presence_of_element_located((By.CSS_SELECTOR, ".js-plotly-plot .legend"))
        )
        wait.until(lambda _: "Pareto front" in legend.text)
        assert "fp32" in legend.text
        traces = browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .scatterlayer .trace")
        names = [t.text for t in browser.find_elements(By.CSS_SELECTOR, ".legend .legendtext")]
        assert names == ["uniform seeds", "Pareto front", "fp32"]
        assert len(traces) == len(names)
        front_points = traces[names.index("Pareto front")].find_elements(
            By.CSS_SELECTOR, ".points path"
        )
        assert front_points, "the front has no point in the DOM"
        browser.save_screenshot(str(tmp_path / "pareto.png"))
        # Plotly's drag layer lies over the points and picks the one under the cursor.
        ActionChains(browser).move_to_element(front_points[0]).pause(0.5).click().perform()
        wait.until(
            lambda b: any(
                h.text.startswith("trial ") for h in b.find_elements(By.CSS_SELECTOR, "h3")
            )
        )
        browser.get(f"{base}/trial?job=job&trial=0")
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".js-plotly-plot")))
        wait.until(lambda b: "trial 0" in b.find_element(By.TAG_NAME, "body").text)
        browser.save_screenshot(str(tmp_path / "trial.png"))
    assert (tmp_path / "pareto.png").stat().st_size > 10_000
