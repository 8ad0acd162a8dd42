from __future__ import annotations

import asyncio
import os
import re
import sys
import types
from pathlib import Path
from typing import Any

README = Path(__file__).parents[2] / "README.md"


def test_write_side_readme_example_runs(tmp_path: Path) -> None:
    text = README.read_text()
    section = text[text.index("## The write side") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    module = types.ModuleType("readme_example")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    namespace: dict[str, Any] = module.__dict__
    exec(compile(code.group(1), str(README), "exec"), namespace)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        asyncio.run(namespace["main"]())
    finally:
        os.chdir(cwd)
        sys.modules.pop(module.__name__, None)
    from facta.log import SqliteLog

    with SqliteLog(tmp_path / "bank.db") as log:
        assert [e.type for e in log.read_stream_sync("account-a")] == ["Deposited", "Withdrawn"]
        assert log.lookup_sync("t-17") is not None
