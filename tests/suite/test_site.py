"""The static leaderboard site in a real headless browser (chromium + selenium): pages load with no console
errors, sorting reorders the table, a value's link opens its records with the provenance."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from suite.leaderboard import latest_per_seed
from suite.results import iter_records
from suite.site import build_site, family

RUNS = Path(__file__).resolve().parents[2] / "leaderboards" / "runs"


def test_site_pages_link_every_value_to_its_records(tmp_path):
    index = build_site(RUNS, tmp_path)
    suite_page = (tmp_path / "suite.html").read_text()
    assert "odice" in suite_page and "records/odice/hopper-medium-v0.html" in suite_page
    rec = (tmp_path / "records" / "odice" / "hopper-medium-v0.html").read_text()
    assert rec.count("<h2 id=") == 3 and "git_revision" in rec and "dataset_checksum" in rec
    assert "Published (not measured here)" in (tmp_path / "d4rl.html").read_text()
    assert index.exists() and (tmp_path / "plots" / "aggregate_iqm.png").exists()


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("no chromium / chromedriver (.ci/run installs them)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--allow-file-access-from-files"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(driver_path), options=opts)
    yield d
    d.quit()


def test_site_in_a_headless_browser(browser, tmp_path):
    from selenium.webdriver.common.by import By

    build_site(RUNS, tmp_path)
    browser.get((tmp_path / "index.html").as_uri())
    assert "leaderboard" in browser.title
    browser.find_element(By.LINK_TEXT, "The suite's own datasets (rebuilt from shipped behaviour policies)").click()
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []

    def column(i):
        return [row.find_elements(By.TAG_NAME, "td")[i].text
                for row in browser.find_elements(By.CSS_SELECTOR, "#measured tbody tr")]

    header = browser.find_elements(By.CSS_SELECTOR, "#measured th")[3]  # mean
    header.click()
    up = [float(v) for v in column(3)]
    # a cell is (method, task, data variant): runs of one task on two dataset builds are two cells
    recs = [r for _, r in iter_records(RUNS)]
    cells = {k for k, seeds in latest_per_seed(recs).items()
             if family(k[1], next(iter(seeds.values())).task_spec["kind"]) == "suite"}
    assert up == sorted(up) and len(up) == len(cells) >= 12  # every committed cell of the suite's datasets
    header.click()
    down = [float(v) for v in column(3)]
    assert down == sorted(down, reverse=True)
    browser.find_element(By.CSS_SELECTOR, "#measured a.value").click()
    prov = browser.find_element(By.CSS_SELECTOR, "pre.provenance").text
    assert "git_revision" in prov and "packages" in prov
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
