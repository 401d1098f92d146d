"""The report page in a real headless browser (Chromium): screenshots to look at, and measurements of
the laid-out page (how wide it is against the window, how wide the prompt column is).

    python -m tests.bench.report.browser OUT_DIR     # builds demo pages, screenshots at 1400 and 800 px

Chromium is looked up as $ARLON_CHROMIUM, else chromium / chromium-browser / google-chrome on PATH
(Debian: `apt-get install -y chromium`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDTHS = (1400, 800)
TIMEOUT_S = 60

# Runs once the page (and its images) has loaded; leaves its findings in the DOM that --dump-dom prints.
MEASURE_SCRIPT = """
<script>
window.addEventListener("load", () => {
  const width = window.innerWidth;
  const outside = [...document.querySelectorAll("body *")].filter(
    (element) => !element.closest(".scroll") && element.getBoundingClientRect().right > width + 1);
  const prompt = document.querySelector("td.prompt");
  const found = {
    viewport: width,
    page: document.documentElement.scrollWidth,
    overflowing: outside.slice(0, 10).map((element) => element.tagName.toLowerCase() + "." + element.className),
    prompt_column: prompt ? prompt.getBoundingClientRect().width : null,
    scroll_boxes: [...document.querySelectorAll(".scroll")].map((box) => [box.clientWidth, box.scrollWidth]),
  };
  const out = document.createElement("pre");
  out.id = "arlon-measured";
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
});
</script>
"""


def find_chromium() -> str | None:
    configured = os.environ.get("ARLON_CHROMIUM")
    if configured:
        return configured
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def _chromium(chromium: str, width: int, height: int, *options: str) -> list[str]:
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
            f"--window-size={width},{height}", *options]


def screenshot(page: Path, png: Path, width: int, height: int = 2400, chromium: str | None = None) -> Path:
    """A PNG of the top `height` pixels of `page` in a `width`-pixel-wide window."""
    chromium = chromium or find_chromium()
    png.parent.mkdir(parents=True, exist_ok=True)
    command = _chromium(chromium, width, height, f"--screenshot={png}", Path(page).resolve().as_uri())
    subprocess.run(command, check=True, capture_output=True, timeout=TIMEOUT_S)
    return png


def measure(page: Path, width: int, chromium: str | None = None) -> dict:
    """The page laid out `width` pixels wide: {viewport, page (its scroll width), overflowing (elements
    outside a scroll box reaching past the window), prompt_column (px), scroll_boxes ([visible, full])}."""
    chromium = chromium or find_chromium()
    html = Path(page).read_text()
    with tempfile.TemporaryDirectory() as directory:
        probe = Path(directory) / "page.html"
        probe.write_text(html.replace("</body>", MEASURE_SCRIPT + "</body>"))
        command = _chromium(chromium, width, 2000, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
        dom = subprocess.run(command, check=True, capture_output=True, text=True, timeout=TIMEOUT_S).stdout
    found = re.search(r'<pre id="arlon-measured">(.*?)</pre>', dom, re.S)
    if found is None:
        raise RuntimeError(f"the measuring script left nothing in the page ({len(dom)} characters of DOM)")
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))


def demo_pages(root: Path) -> dict[str, Path]:
    """Report pages of stored runs with synthetic scores: a two-axis grid (fusion x noise, toy
    metrics) and the table3 grid with the paper's six VBench columns (the widest tables)."""
    from bench.report import write_report
    from tests.bench.report.page_data import fusion_noise_grid, stored_run, table3_vbench_grid

    root.mkdir(parents=True, exist_ok=True)
    grid = fusion_noise_grid(root)
    pages = {"fusion_noise": write_report(stored_run(root / "fusion_noise", grid), grid).files["report.html"]}
    grid = table3_vbench_grid()
    pages["table3"] = write_report(stored_run(root / "table3", grid), grid).files["report.html"]
    return pages


def main(out: Path) -> None:
    if find_chromium() is None:
        sys.exit("no chromium found: apt-get install -y chromium, or set ARLON_CHROMIUM")
    for name, page in demo_pages(out / "runs").items():
        for width in WIDTHS:
            png = screenshot(page, out / f"{name}_{width}.png", width)
            print(f"{png}: {measure(page, width)}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "reports/screenshots"))
