"""The documentation site serves MathJax itself: no formula needs the network."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_mathjax_is_served_from_the_site():
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
    scripts = config["extra_javascript"]
    assert not [s for s in scripts if "://" in s]  # nothing loaded from another site
    assert "javascripts/vendor/mathjax/tex-chtml.js" in scripts
    vendor = ROOT / "docs" / "javascripts" / "vendor" / "mathjax"
    assert (vendor / "tex-chtml.js").stat().st_size > 500_000
    fonts = list((vendor / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert len(fonts) >= 20  # the CommonHTML fonts tex-chtml.js loads from beside itself
    assert (vendor / "LICENSE").is_file()
    assert sum(f.stat().st_size for f in vendor.rglob("*")) < 2 * 2**20  # only what is needed
