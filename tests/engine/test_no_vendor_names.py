"""Invariant 1: the engine names no vendor; every vendor fact lives in connectors/*.yaml."""

import re
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engine"
VENDORS = re.compile(r"zoho|salesforce|sfdc|pipedrive|marketo|mktorest|magento|adobe|\bqad\b|qxtend", re.I)


def test_engine_names_no_vendor() -> None:
    files = sorted(ENGINE.rglob("*.py"))
    assert files, "engine/ has no Python files"
    hits = [f"{path.relative_to(ENGINE.parent)}:{number}: {line.strip()}"
            for path in files
            for number, line in enumerate(path.read_text().splitlines(), start=1)
            if VENDORS.search(line)]
    assert hits == []


def test_the_check_would_catch_a_vendor_name(tmp_path: Path) -> None:
    sample = "client = PipedriveClient()  # talks to Marketo too\n"
    assert VENDORS.search(sample)
    assert not VENDORS.search("quad = squad  # no vendor here\n")
