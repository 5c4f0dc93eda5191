#!/usr/bin/env python3
"""Every function of the public C API has its contract in its header: a doc
comment right above the declaration with an @param for each parameter and an
@return unless it returns void (issue: "@param/@return/errors on every public
function"). Usage: api_docs_test.py INCLUDE_DIR"""
import re
import sys
from pathlib import Path

include = Path(sys.argv[1])
headers = [include / "ndis/ndis_shm.h"] + sorted((include / "ndisshm").glob("*.h"))
decl = re.compile(r"NDISSHM_API\s+(?P<ret>[^;(]*?)\b(?P<name>[A-Za-z_]\w*)\s*\((?P<params>[^;]*?)\)\s*;", re.S)
problems = []
count = 0
for header in headers:
    text = header.read_text()
    for m in decl.finditer(text):
        count += 1
        name, ret, params = m.group("name"), m.group("ret").strip(), m.group("params")
        before = text[: m.start()].rstrip()
        if not before.endswith("*/"):
            problems.append(f"{header.name}: {name}: no doc comment right above it")
            continue
        doc = before[before.rfind("/**") :]
        names = []
        for p in params.split(","):
            p = re.sub(r"/\*.*?\*/", "", p).strip()
            if not p or p == "void":
                continue
            pm = re.search(r"([A-Za-z_]\w*)\s*(\[\s*\])?$", p)
            if pm:
                names.append(pm.group(1))
        for n in names:
            if not re.search(r"@param(\[\w+\])?\s+" + re.escape(n) + r"\b", doc):
                problems.append(f"{header.name}: {name}: no @param {n}")
        if ret not in ("void", "VOID") and "@return" not in doc:
            problems.append(f"{header.name}: {name}: no @return")
for p in problems:
    print(p)
print(f"api docs: {count} functions, {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
