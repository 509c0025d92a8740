"""Reading LLVM module text line by line: function definitions, their blocks and
terminators (for the passes that edit the printed module: aggregate phis, loop
metadata)."""
from __future__ import annotations

import re

#: A block label at the start of a line (``B60.if:``, ``"a b":``).
LABEL = re.compile(r"^([-\w.$\"]+):")
#: What a block's terminator line starts with (after its indentation).
TERMINATORS = ("br ", "switch ", "ret ", "ret\n", "unreachable", "indirectbr ", "invoke ",
               "resume ", "callbr ")
#: A ``define`` line; group 1 is the function's name (quoted if it needs quotes).
DEFINE = re.compile(r'^define [^@]*@("(?:[^"\\]|\\.)*"|[-\w.$]+)\(')

ENTRY = "\0entry"      # the name given to an unlabelled entry block


def functions(text: str):
    """``(name, body lines)`` of every function definition in module ``text``
    (the lines between ``define`` and ``}``)."""
    fn = None
    for line in text.split("\n"):
        m = DEFINE.match(line)
        if m:
            fn = (m.group(1).strip('"'), [])
        elif fn is not None:
            if line.startswith("}"):
                yield fn
                fn = None
            else:
                fn[1].append(line)


def blocks(body) -> tuple:
    """``(order, {block name: its lines})`` of a function's body lines, labels
    left out; an unlabelled entry block is called :data:`ENTRY`."""
    order, out, cur = [], {}, None
    for line in body:
        m = LABEL.match(line)
        if m:
            cur = m.group(1).strip('"')
            order.append(cur)
            out[cur] = []
            continue
        if cur is None:
            cur = ENTRY
            order.append(cur)
            out[cur] = []
        out[cur].append(line)
    return order, out
